//! `ether` links: raw Ethernet frames with our own EtherType, through pnet.
//!
//! A frame is `dst MAC | src MAC | EtherType (big-endian) | payload`, padded with
//! zeros to the 60-byte minimum. The payload is the core's frame as is; its decoder
//! reads its own length field, so the padding needs no marking.

use std::fmt;
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use pnet_datalink::{Channel, DataLinkReceiver, DataLinkSender};
use tokio::sync::mpsc;

use super::{describe, push, Counters, DriverStats, Pushed, RxFrame};
use crate::types::{LinkAddr, LinkId};

/// The all-ones destination: every station on the segment.
pub const BROADCAST_MAC: [u8; 6] = [0xff; 6];
/// Destination MAC, source MAC and EtherType.
pub const ETHER_HEADER_LEN: usize = 14;
/// The shortest frame Ethernet carries (without the FCS); shorter ones are padded.
pub const ETHER_MIN_FRAME: usize = 60;
/// EtherTypes start here; lower values in that field are 802.3 lengths.
const MIN_ETHERTYPE: u16 = 0x0600;
/// How long a read waits before the reader looks at its stop flag again; also
/// the bound on how long dropping a link takes.
const READ_TIMEOUT: Duration = Duration::from_millis(100);
/// How long a send may wait for room in the socket's buffer before the frame is
/// dropped (and counted as `tx_would_block`).
const WRITE_TIMEOUT: Duration = Duration::from_millis(10);
/// Large enough for any frame, jumbo frames included.
const READ_BUFFER_BYTES: usize = 64 * 1024;

/// An open Ethernet link: a raw socket on one interface and the thread that
/// reads it.
///
/// Dropping the link stops and joins its reader (within its read timeout, 100 ms).
pub struct EtherLink {
    link: LinkId,
    interface: String,
    mac: [u8; 6],
    ethertype: u16,
    tx: Mutex<Box<dyn DataLinkSender>>,
    counters: Arc<Counters>,
    stop: Arc<AtomicBool>,
    reader: Option<JoinHandle<()>>,
}

impl EtherLink {
    /// Opens a raw socket on `interface` and starts a reader thread that queues
    /// on `rx` every frame with our `ethertype` sent to our MAC or to a group
    /// address (broadcast, multicast) by another station.
    ///
    /// Needs root or `CAP_NET_RAW`; the error says so when that is what's missing.
    /// Does not need a tokio runtime.
    pub fn open(
        link: LinkId,
        interface: &str,
        ethertype: u16,
        rx: mpsc::Sender<RxFrame>,
    ) -> io::Result<EtherLink> {
        if ethertype < MIN_ETHERTYPE {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "ether link {link}: EtherType {ethertype:#06x} is an 802.3 length \
                     (EtherTypes start at {MIN_ETHERTYPE:#06x})"
                ),
            ));
        }
        let iface = pnet_datalink::interfaces()
            .into_iter()
            .find(|i| i.name == interface)
            .ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::NotFound,
                    format!("ether link {link}: no network interface named {interface:?}"),
                )
            })?;
        let mac = match iface.mac {
            Some(m) if m.octets() != [0; 6] => m.octets(),
            _ => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("ether link {link}: interface {interface} has no MAC address"),
                ))
            }
        };
        let config = pnet_datalink::Config {
            read_buffer_size: READ_BUFFER_BYTES,
            read_timeout: Some(READ_TIMEOUT),
            write_timeout: Some(WRITE_TIMEOUT),
            promiscuous: false,
            ..pnet_datalink::Config::default()
        };
        let (tx, receiver) = match pnet_datalink::channel(&iface, config) {
            Ok(Channel::Ethernet(tx, rx)) => (tx, rx),
            Ok(_) => {
                return Err(io::Error::new(
                    io::ErrorKind::Unsupported,
                    format!("ether link {link}: {interface}: not an Ethernet channel"),
                ))
            }
            Err(e) => {
                let hint = if e.kind() == io::ErrorKind::PermissionDenied {
                    " (needs root or CAP_NET_RAW)"
                } else {
                    ""
                };
                return Err(io::Error::new(
                    e.kind(),
                    format!(
                        "ether link {link}: cannot open raw socket on {interface}: {}{hint}",
                        describe(&e)
                    ),
                ));
            }
        };
        let counters = Arc::new(Counters::default());
        let stop = Arc::new(AtomicBool::new(false));
        let reader = Reader {
            link,
            mac,
            ethertype,
            queue: rx,
            counters: counters.clone(),
            stop: stop.clone(),
        };
        let reader = std::thread::Builder::new()
            .name(format!("vigil-ether-{link}"))
            .spawn(move || reader.run(receiver))
            .map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!("ether link {link}: cannot start the reader thread: {e}"),
                )
            })?;
        tracing::debug!(
            link = link.0,
            interface,
            mac = %LinkAddr::Ether(mac),
            ethertype,
            "ether link open"
        );
        Ok(EtherLink {
            link,
            interface: interface.to_string(),
            mac,
            ethertype,
            tx: Mutex::new(tx),
            counters,
            stop,
            reader: Some(reader),
        })
    }

    /// Sends `payload` to `to`, or to every station when `to` is `None`.
    ///
    /// Waits at most its write timeout (10 ms) for room in the socket's buffer; a frame
    /// that finds none is dropped, counted in `tx_would_block`, and `Ok` is
    /// returned. Other errors (a payload over the MTU, the interface gone) are
    /// counted in `tx_errors` and returned.
    pub fn send(&self, to: Option<[u8; 6]>, payload: &[u8]) -> io::Result<()> {
        let frame = build_frame(
            to.unwrap_or(BROADCAST_MAC),
            self.mac,
            self.ethertype,
            payload,
        );
        let sent = self
            .tx
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .send_to(&frame, None);
        match sent {
            Some(Ok(())) => {
                self.counters.tx_frame();
                Ok(())
            }
            Some(Err(e))
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                self.counters.tx_would_block();
                Ok(())
            }
            Some(Err(e)) => {
                self.counters.tx_error();
                Err(io::Error::new(
                    e.kind(),
                    format!(
                        "ether link {}: cannot send on {}: {}",
                        self.link,
                        self.interface,
                        describe(&e)
                    ),
                ))
            }
            None => {
                self.counters.tx_error();
                Err(io::Error::new(
                    io::ErrorKind::Unsupported,
                    format!(
                        "ether link {}: {} cannot send frames",
                        self.link, self.interface
                    ),
                ))
            }
        }
    }

    /// Our MAC: the source of every frame we send.
    pub fn mac(&self) -> [u8; 6] {
        self.mac
    }

    /// The interface the link is open on.
    pub fn interface(&self) -> &str {
        &self.interface
    }

    /// The EtherType of our frames.
    pub fn ethertype(&self) -> u16 {
        self.ethertype
    }

    /// The link's index in the cluster's link list.
    pub fn id(&self) -> LinkId {
        self.link
    }

    /// A snapshot of the driver's counters.
    pub fn stats(&self) -> DriverStats {
        self.counters.snapshot()
    }
}

impl Drop for EtherLink {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(reader) = self.reader.take() {
            if reader.join().is_err() {
                tracing::warn!(link = self.link.0, "ether link: reader thread panicked");
            }
        }
    }
}

impl fmt::Debug for EtherLink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EtherLink")
            .field("link", &self.link)
            .field("interface", &self.interface)
            .field("mac", &LinkAddr::Ether(self.mac).to_string())
            .field("ethertype", &format_args!("{:#06x}", self.ethertype))
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

/// `dst | src | ethertype | payload`, zero-padded to [`ETHER_MIN_FRAME`].
fn build_frame(dst: [u8; 6], src: [u8; 6], ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let len = (ETHER_HEADER_LEN + payload.len()).max(ETHER_MIN_FRAME);
    let mut frame = Vec::with_capacity(len);
    frame.extend_from_slice(&dst);
    frame.extend_from_slice(&src);
    frame.extend_from_slice(&ethertype.to_be_bytes());
    frame.extend_from_slice(payload);
    frame.resize(len, 0);
    frame
}

/// The source MAC of `frame` if it is ours to take: our EtherType, sent by
/// another station (a packet socket also sees our own outgoing frames) with a
/// valid individual source address, to our MAC or to a group address (the
/// interface may be promiscuous because of someone else's capture).
fn accept(frame: &[u8], own: [u8; 6], ethertype: u16) -> Option<[u8; 6]> {
    let header = frame.get(..ETHER_HEADER_LEN)?;
    let mut dst = [0u8; 6];
    let mut src = [0u8; 6];
    dst.copy_from_slice(&header[0..6]);
    src.copy_from_slice(&header[6..12]);
    let kind = u16::from_be_bytes([header[12], header[13]]);
    let is_group = |mac: [u8; 6]| mac[0] & 1 == 1;
    let wanted = kind == ethertype && src != own && !is_group(src) && (dst == own || is_group(dst));
    wanted.then_some(src)
}

/// What the reader thread owns.
struct Reader {
    link: LinkId,
    mac: [u8; 6],
    ethertype: u16,
    queue: mpsc::Sender<RxFrame>,
    counters: Arc<Counters>,
    stop: Arc<AtomicBool>,
}

impl Reader {
    /// Reads until the link is dropped or the queue's receiver is gone.
    fn run(self, mut rx: Box<dyn DataLinkReceiver>) {
        let mut failing = false;
        while !self.stop.load(Ordering::Acquire) {
            match rx.next() {
                Ok(frame) => {
                    failing = false;
                    let Some(src) = accept(frame, self.mac, self.ethertype) else {
                        continue;
                    };
                    let frame = RxFrame {
                        link: self.link,
                        from: LinkAddr::Ether(src),
                        bytes: frame[ETHER_HEADER_LEN..].to_vec(),
                        at: Instant::now(),
                    };
                    if push(&self.queue, &self.counters, frame) == Pushed::Closed {
                        tracing::debug!(
                            link = self.link.0,
                            "ether link: queue closed, reader stops"
                        );
                        return;
                    }
                }
                // The read timeout (time to look at the stop flag), or a signal.
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::TimedOut
                            | io::ErrorKind::WouldBlock
                            | io::ErrorKind::Interrupted
                    ) => {}
                // The interface went down, for instance: keep trying, gently.
                Err(e) => {
                    if !failing {
                        tracing::warn!(link = self.link.0, error = %e, "ether link: receive failed");
                        failing = true;
                    }
                    std::thread::sleep(READ_TIMEOUT);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ME: [u8; 6] = [0x02, 0, 0, 0, 0, 1];
    const PEER: [u8; 6] = [0x02, 0, 0, 0, 0, 2];

    #[test]
    fn frames_are_padded_to_the_minimum() {
        let f = build_frame(PEER, ME, 0xcafe, b"hi");
        assert_eq!(f.len(), ETHER_MIN_FRAME);
        assert_eq!(&f[..6], &PEER);
        assert_eq!(&f[6..12], &ME);
        assert_eq!(&f[12..14], &[0xca, 0xfe]);
        assert_eq!(&f[14..16], b"hi");
        assert!(f[16..].iter().all(|&b| b == 0));
        let big = build_frame(PEER, ME, 0xcafe, &[7; 100]);
        assert_eq!(big.len(), ETHER_HEADER_LEN + 100);
    }

    #[test]
    fn accept_keeps_only_our_frames_from_others() {
        let ours = build_frame(ME, PEER, 0xcafe, b"x");
        assert_eq!(accept(&ours, ME, 0xcafe), Some(PEER));
        let broadcast = build_frame(BROADCAST_MAC, PEER, 0xcafe, b"x");
        assert_eq!(accept(&broadcast, ME, 0xcafe), Some(PEER));
        // Our own outgoing frame, seen by the packet socket.
        let looped = build_frame(BROADCAST_MAC, ME, 0xcafe, b"x");
        assert_eq!(accept(&looped, ME, 0xcafe), None);
        // Another EtherType, another station's unicast, a group source, a runt.
        assert_eq!(
            accept(&build_frame(ME, PEER, 0x0800, b"x"), ME, 0xcafe),
            None
        );
        let third = [0x02, 0, 0, 0, 0, 3];
        assert_eq!(
            accept(&build_frame(third, PEER, 0xcafe, b"x"), ME, 0xcafe),
            None
        );
        assert_eq!(
            accept(&build_frame(ME, BROADCAST_MAC, 0xcafe, b"x"), ME, 0xcafe),
            None
        );
        assert_eq!(accept(&ours[..13], ME, 0xcafe), None);
    }
}
