//! The link drivers: thin IO around the sans-IO core (feature `drivers`).
//!
//! A driver opens one link, reads frames from it into a *bounded* queue shared by
//! every link ([`RxFrame`] values, handed to the one task that owns the core), and
//! sends what the core asks it to send. Drivers hold no protocol logic: no parsing,
//! no authentication, no timers. What they count is their own business — frames
//! read and queued, frames dropped because the queue was full, frames sent, send
//! errors — in [`DriverStats`]; the core counts its protocol drops.
//!
//! - [`UdpLink`] (`udp`, `udp6` links): a socket2-built UDP socket on tokio.
//! - [`EtherLink`] (`ether` links): raw Ethernet frames with our own EtherType,
//!   through pnet, read by a dedicated thread.
//!
//! A reader never blocks on the queue: when it is full, the frame is dropped and
//! counted in [`DriverStats::rx_queue_full`] (heartbeats are periodic; a late one is
//! worth less than a reader that keeps up).

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;
use tokio::sync::mpsc;

use crate::types::{LinkAddr, LinkId};

mod ether;
mod udp;

pub use self::ether::{EtherLink, BROADCAST_MAC, ETHER_HEADER_LEN, ETHER_MIN_FRAME};
pub use self::udp::UdpLink;

/// One frame read from a link, as it goes to the core.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RxFrame {
    /// The link it was read from.
    pub link: LinkId,
    /// Who sent it: the UDP source address or the source MAC.
    pub from: LinkAddr,
    /// The payload: the UDP datagram, or the bytes after the Ethernet header (which
    /// may carry trailing padding up to the 60-byte minimum frame).
    pub bytes: Vec<u8>,
    /// When the reader got it, on the monotonic clock.
    pub at: std::time::Instant,
}

/// Counters of the driver itself (the core counts protocol drops).
#[derive(Default, Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct DriverStats {
    /// Frames read from the link and queued for the core.
    pub rx_frames: u64,
    /// Frames read from the link and dropped because the queue was full
    /// (frames read = `rx_frames + rx_queue_full`).
    pub rx_queue_full: u64,
    /// Frames handed to the kernel.
    pub tx_frames: u64,
    /// Sends that failed (the error is returned to the caller too).
    pub tx_errors: u64,
    /// Sends dropped because the socket's buffer was full (not an error: the
    /// frame is lost, as on a congested wire).
    pub tx_would_block: u64,
}

/// The live counters behind [`DriverStats`], shared by a link and its reader.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    rx_frames: AtomicU64,
    rx_queue_full: AtomicU64,
    tx_frames: AtomicU64,
    tx_errors: AtomicU64,
    tx_would_block: AtomicU64,
}

impl Counters {
    pub(crate) fn snapshot(&self) -> DriverStats {
        DriverStats {
            rx_frames: self.rx_frames.load(Ordering::Relaxed),
            rx_queue_full: self.rx_queue_full.load(Ordering::Relaxed),
            tx_frames: self.tx_frames.load(Ordering::Relaxed),
            tx_errors: self.tx_errors.load(Ordering::Relaxed),
            tx_would_block: self.tx_would_block.load(Ordering::Relaxed),
        }
    }

    pub(crate) fn tx_frame(&self) {
        self.tx_frames.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn tx_error(&self) {
        self.tx_errors.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn tx_would_block(&self) {
        self.tx_would_block.fetch_add(1, Ordering::Relaxed);
    }
}

/// What happened to a frame handed to [`push`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Pushed {
    Queued,
    QueueFull,
    /// The receiving side is gone: the reader should stop.
    Closed,
}

/// Queues `frame` without waiting; a full queue drops it and counts it.
pub(crate) fn push(tx: &mpsc::Sender<RxFrame>, counters: &Counters, frame: RxFrame) -> Pushed {
    match tx.try_send(frame) {
        Ok(()) => {
            counters.rx_frames.fetch_add(1, Ordering::Relaxed);
            Pushed::Queued
        }
        Err(mpsc::error::TrySendError::Full(_)) => {
            counters.rx_queue_full.fetch_add(1, Ordering::Relaxed);
            Pushed::QueueFull
        }
        Err(mpsc::error::TrySendError::Closed(_)) => Pushed::Closed,
    }
}

/// The OS's description of an error without the trailing " (os error N)", so that
/// messages read "…: Operation not permitted (needs root or CAP_NET_RAW)".
pub(crate) fn describe(e: &io::Error) -> String {
    let text = e.to_string();
    match (e.raw_os_error(), text.rfind(" (os error ")) {
        (Some(_), Some(at)) if text.ends_with(')') => text[..at].to_string(),
        _ => text,
    }
}

/// An open link of either kind.
#[derive(Debug)]
pub enum Link {
    Udp(UdpLink),
    Ether(EtherLink),
}

impl Link {
    /// The link's index in the cluster's link list.
    pub fn id(&self) -> LinkId {
        match self {
            Link::Udp(l) => l.id(),
            Link::Ether(l) => l.id(),
        }
    }

    /// Sends `bytes` to `to`. `None` means broadcast, which only Ethernet links
    /// support; an address of the other link kind is refused with `InvalidInput`
    /// (a caller's mistake, not counted).
    pub fn send(&self, to: Option<LinkAddr>, bytes: &[u8]) -> io::Result<()> {
        match (self, to) {
            (Link::Udp(l), Some(LinkAddr::Udp(addr))) => l.send_to(addr, bytes),
            (Link::Ether(l), Some(LinkAddr::Ether(mac))) => l.send(Some(mac), bytes),
            (Link::Ether(l), None) => l.send(None, bytes),
            (Link::Udp(l), None) => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("udp link {}: no broadcast on UDP links", l.id()),
            )),
            (link, Some(to)) => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "link {}: cannot send to {to} on this kind of link",
                    link.id()
                ),
            )),
        }
    }

    /// A snapshot of the driver's counters.
    pub fn stats(&self) -> DriverStats {
        match self {
            Link::Udp(l) => l.stats(),
            Link::Ether(l) => l.stats(),
        }
    }

    /// The local address: the bound socket address, or our MAC.
    pub fn local_addr(&self) -> LinkAddr {
        match self {
            Link::Udp(l) => LinkAddr::Udp(l.local_addr()),
            Link::Ether(l) => LinkAddr::Ether(l.mac()),
        }
    }
}

impl From<UdpLink> for Link {
    fn from(l: UdpLink) -> Link {
        Link::Udp(l)
    }
}

impl From<EtherLink> for Link {
    fn from(l: EtherLink) -> Link {
        Link::Ether(l)
    }
}
