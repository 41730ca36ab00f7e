//! Recording and replaying llt frames on the wire of a network-namespace lab.
//!
//! A [`Recorder`] opens a raw `AF_PACKET` socket (promiscuous) on each of the given
//! interfaces of one namespace — typically the bridges of a lab's hub, which then
//! hand every frame they forward to the socket as well — and keeps every UDP/IPv4
//! datagram it sees with its time, link, addresses and payload.
//!
//! An `Injector` writes hand-built Ethernet/IPv4/UDP frames straight onto an
//! interface (typically the hub-side end of one node's veth, so that only that node
//! receives them, from whatever source address and MAC the frame names: the bridge
//! never sees them, so it learns nothing from them). A [`Replayer`] sends a list of
//! such frames from a thread at given offsets from its start, once or in a loop.
//!
//! The sockets are opened in the lab's namespace by a thread that enters it with
//! `setns(2)` (a network namespace is per thread), so the test process itself stays
//! where it is. Needs root.

use serde_json::Value;
use std::fmt::Write as _;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::fd::AsRawFd as _;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use vigil_llt::types::Port;
use vigil_llt::wire::{self, Header, Kind};
use vigil_membership::msg::Msg;

/// A MAC address.
pub type Mac = [u8; 6];

const ETHERTYPE_IPV4: u16 = 0x0800;
const IPPROTO_UDP: u8 = 17;
/// How often a blocked socket read wakes up to look at its stop flag.
const READ_TIMEOUT: Duration = Duration::from_millis(50);
/// Most datagrams one recorder keeps (a bound: a lab of a few nodes sends far fewer
/// in a test's lifetime).
const MAX_RECORDED: usize = 1_000_000;

/// Move the calling thread into network namespace `name` (`/run/netns/NAME`).
pub fn enter_netns(name: &str) -> Result<(), String> {
    let path = format!("/run/netns/{name}");
    let f = std::fs::File::open(&path).map_err(|e| format!("open {path}: {e}"))?;
    // SAFETY: setns(2) on a valid open namespace file descriptor; it only changes
    // the calling thread's network namespace.
    let rc = unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) };
    if rc != 0 {
        return Err(format!(
            "setns({path}): {}",
            std::io::Error::last_os_error()
        ));
    }
    Ok(())
}

/// The MAC address of `dev` in namespace `netns` (`ip -j link show`).
pub fn mac_of(netns: &str, dev: &str) -> Mac {
    let out = std::process::Command::new("ip")
        .args(["-n", netns, "-j", "link", "show", "dev", dev])
        .output()
        .expect("run ip");
    let v: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("ip -n {netns} -j link show {dev}: {e}"));
    parse_mac(v[0]["address"].as_str().unwrap_or(""))
        .unwrap_or_else(|| panic!("no MAC address for {dev} in {netns}: {v}"))
}

/// `aa:bb:cc:dd:ee:ff` as bytes.
pub fn parse_mac(s: &str) -> Option<Mac> {
    let mut mac = [0u8; 6];
    let mut parts = s.split(':');
    for b in &mut mac {
        *b = u8::from_str_radix(parts.next()?, 16).ok()?;
    }
    parts.next().is_none().then_some(mac)
}

/// One UDP/IPv4 datagram seen on the wire.
#[derive(Clone, Debug)]
pub struct Datagram {
    /// When it was seen, from the recorder's start.
    pub at: Duration,
    /// Which of the recorder's interfaces it was seen on (index into its list).
    pub link: usize,
    pub src_mac: Mac,
    pub dst_mac: Mac,
    pub src: SocketAddrV4,
    pub dst: SocketAddrV4,
    pub payload: Vec<u8>,
}

impl Datagram {
    /// The llt header of the payload, if it is an llt frame (no key is needed to
    /// read one: the MAC authenticates, it does not hide).
    pub fn header(&self) -> Option<Header> {
        wire::decode(&self.payload).ok().map(|f| f.header)
    }

    /// The port-`b` message the payload carries, if any.
    pub fn fence_msg(&self) -> Option<Msg> {
        let f = wire::decode(&self.payload).ok()?;
        if f.header.kind != Kind::Data {
            return None;
        }
        let d = wire::decode_data(f.payload).ok()?;
        (d.port == Port::FENCE)
            .then(|| Msg::decode(d.body).ok())
            .flatten()
    }

    /// One line for humans: time, addresses, and what the llt frame is.
    pub fn describe(&self) -> String {
        let mut s = format!(
            "{:>8.3}s link {} {} -> {}",
            self.at.as_secs_f64(),
            self.link,
            self.src,
            self.dst
        );
        if let Some(h) = self.header() {
            let dst = h.dst.map_or("*".to_string(), |d| d.0.to_string());
            let _ = write!(
                s,
                " n{}->{dst} inc {} seq {} gen {} echo_inc {}{}",
                h.src.0,
                h.incarnation.0,
                h.seq,
                h.generation.0,
                h.echo_incarnation.0,
                if h.confirm { " confirm" } else { "" }
            );
            match (h.kind, self.fence_msg()) {
                (Kind::Heartbeat, _) => s.push_str(" heartbeat"),
                (Kind::Data, Some(m)) => {
                    let _ = write!(s, " {m:?}");
                }
                (Kind::Data, None) => s.push_str(" data"),
            }
        }
        s
    }
}

/// An Ethernet/IPv4/UDP frame's addresses and payload, if it is one.
pub fn parse_udp(frame: &[u8]) -> Option<(Mac, Mac, SocketAddrV4, SocketAddrV4, &[u8])> {
    let eth = frame.get(..14)?;
    if u16::from_be_bytes([eth[12], eth[13]]) != ETHERTYPE_IPV4 {
        return None;
    }
    let dst_mac: Mac = eth[0..6].try_into().ok()?;
    let src_mac: Mac = eth[6..12].try_into().ok()?;
    let ip = &frame[14..];
    let ihl = usize::from(*ip.first()? & 0x0f) * 4;
    if *ip.first()? >> 4 != 4 || ihl < 20 || ip.get(9)? != &IPPROTO_UDP {
        return None;
    }
    let total = usize::from(u16::from_be_bytes([*ip.get(2)?, *ip.get(3)?]));
    // Not a first fragment or a later one: llt frames fit one datagram.
    let frag = u16::from_be_bytes([*ip.get(6)?, *ip.get(7)?]);
    if frag & 0x3fff != 0 {
        return None;
    }
    let src_ip = Ipv4Addr::new(ip[12], ip[13], ip[14], ip[15]);
    let dst_ip = Ipv4Addr::new(ip[16], ip[17], ip[18], ip[19]);
    let udp = ip.get(ihl..total.max(ihl))?;
    let udp_len = usize::from(u16::from_be_bytes([*udp.get(4)?, *udp.get(5)?]));
    let payload = udp.get(8..udp_len)?;
    let src = SocketAddrV4::new(src_ip, u16::from_be_bytes([udp[0], udp[1]]));
    let dst = SocketAddrV4::new(dst_ip, u16::from_be_bytes([udp[2], udp[3]]));
    Some((src_mac, dst_mac, src, dst, payload))
}

/// An Ethernet/IPv4/UDP frame carrying `payload` (UDP checksum 0: none, which IPv4
/// allows).
pub fn udp_frame(
    src_mac: Mac,
    dst_mac: Mac,
    src: SocketAddrV4,
    dst: SocketAddrV4,
    payload: &[u8],
) -> Vec<u8> {
    let udp_len = 8 + payload.len();
    let total = 20 + udp_len;
    let mut f = Vec::with_capacity(14 + total);
    f.extend_from_slice(&dst_mac);
    f.extend_from_slice(&src_mac);
    f.extend_from_slice(&ETHERTYPE_IPV4.to_be_bytes());
    let mut ip = [0u8; 20];
    ip[0] = 0x45;
    ip[2..4].copy_from_slice(&(total as u16).to_be_bytes());
    ip[6] = 0x40; // don't fragment
    ip[8] = 64;
    ip[9] = IPPROTO_UDP;
    ip[12..16].copy_from_slice(&src.ip().octets());
    ip[16..20].copy_from_slice(&dst.ip().octets());
    let sum = ip
        .chunks(2)
        .map(|w| u32::from(u16::from_be_bytes([w[0], w[1]])))
        .sum::<u32>();
    let folded = (sum & 0xffff) + (sum >> 16);
    let folded = (folded & 0xffff) + (folded >> 16);
    ip[10..12].copy_from_slice(&(!(folded as u16)).to_be_bytes());
    f.extend_from_slice(&ip);
    f.extend_from_slice(&src.port().to_be_bytes());
    f.extend_from_slice(&dst.port().to_be_bytes());
    f.extend_from_slice(&(udp_len as u16).to_be_bytes());
    f.extend_from_slice(&[0, 0]);
    f.extend_from_slice(payload);
    f
}

/// The two ends of a raw layer-2 channel.
type Channel = (
    Box<dyn pnet_datalink::DataLinkSender>,
    Box<dyn pnet_datalink::DataLinkReceiver>,
);

/// A raw layer-2 channel on interface `dev` of the calling thread's namespace.
fn open_channel(dev: &str, promiscuous: bool) -> Result<Channel, String> {
    let iface = pnet_datalink::interfaces()
        .into_iter()
        .find(|i| i.name == dev)
        .ok_or_else(|| format!("no interface {dev}"))?;
    let cfg = pnet_datalink::Config {
        read_timeout: Some(READ_TIMEOUT),
        promiscuous,
        read_buffer_size: 65536,
        ..Default::default()
    };
    match pnet_datalink::channel(&iface, cfg) {
        Ok(pnet_datalink::Channel::Ethernet(tx, rx)) => Ok((tx, rx)),
        Ok(_) => Err(format!("{dev}: not an Ethernet channel")),
        Err(e) => Err(format!("AF_PACKET socket on {dev}: {e}")),
    }
}

/// Records every UDP/IPv4 datagram seen on some interfaces of one namespace, until
/// stopped or dropped.
pub struct Recorder {
    started: Instant,
    stop: Arc<AtomicBool>,
    frames: Arc<Mutex<Vec<Datagram>>>,
    threads: Vec<JoinHandle<()>>,
}

impl Recorder {
    /// Start recording on `interfaces` of namespace `netns` (promiscuous); returns
    /// once every socket is open, so nothing sent afterwards is missed.
    pub fn start(netns: &str, interfaces: &[&str]) -> Recorder {
        let started = Instant::now();
        let stop = Arc::new(AtomicBool::new(false));
        let frames = Arc::new(Mutex::new(Vec::new()));
        let (ready_tx, ready_rx) = mpsc::channel::<Result<(), String>>();
        let mut threads = Vec::new();
        for (link, dev) in interfaces.iter().enumerate() {
            let (netns, dev) = (netns.to_string(), dev.to_string());
            let (stop, frames, ready) = (stop.clone(), frames.clone(), ready_tx.clone());
            threads.push(std::thread::spawn(move || {
                let opened = enter_netns(&netns).and_then(|()| open_channel(&dev, true));
                let mut rx = match opened {
                    Ok((_tx, rx)) => {
                        let _ = ready.send(Ok(()));
                        rx
                    }
                    Err(e) => {
                        let _ = ready.send(Err(format!("recorder on {netns}/{dev}: {e}")));
                        return;
                    }
                };
                while !stop.load(Ordering::Relaxed) {
                    let Ok(frame) = rx.next() else { continue };
                    let at = started.elapsed();
                    let Some((src_mac, dst_mac, src, dst, payload)) = parse_udp(frame) else {
                        continue;
                    };
                    let d = Datagram {
                        at,
                        link,
                        src_mac,
                        dst_mac,
                        src,
                        dst,
                        payload: payload.to_vec(),
                    };
                    let mut all = frames.lock().expect("recorder lock");
                    assert!(
                        all.len() < MAX_RECORDED,
                        "recorder: {MAX_RECORDED} datagrams"
                    );
                    all.push(d);
                }
            }));
        }
        drop(ready_tx);
        for _ in interfaces {
            match ready_rx.recv() {
                Ok(Ok(())) => {}
                Ok(Err(e)) => panic!("{e}"),
                Err(_) => panic!("a recorder thread ended before opening its socket"),
            }
        }
        Recorder {
            started,
            stop,
            frames,
            threads,
        }
    }

    /// When the recording began (the origin of every [`Datagram::at`]).
    pub fn started(&self) -> Instant {
        self.started
    }

    /// What was recorded so far, in time order.
    pub fn frames(&self) -> Vec<Datagram> {
        let mut v = self.frames.lock().expect("recorder lock").clone();
        v.sort_by_key(|d| d.at);
        v
    }

    /// Stop recording; everything recorded, in time order.
    pub fn stop(mut self) -> Vec<Datagram> {
        self.halt();
        self.frames()
    }

    fn halt(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        self.halt();
    }
}

/// One frame to inject: when (from the replay's start), on which of the replayer's
/// interfaces, and the whole Ethernet frame.
#[derive(Clone, Debug)]
pub struct Shot {
    pub at: Duration,
    pub port: usize,
    pub frame: Vec<u8>,
}

/// Injects [`Shot`]s from a thread, at their offsets from its start; once, or again
/// and again (each pass starting when the previous one ended) until stopped.
pub struct Replayer {
    started: Instant,
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicU64>,
    passes: Arc<AtomicU64>,
    thread: Option<JoinHandle<Result<(), String>>>,
}

impl Replayer {
    /// Start replaying `shots` (sorted by time here) on `ports`, interfaces of
    /// namespace `netns`; returns once the sockets are open.
    pub fn start(netns: &str, ports: &[String], mut shots: Vec<Shot>, looped: bool) -> Replayer {
        shots.sort_by_key(|s| s.at);
        let stop = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(AtomicU64::new(0));
        let passes = Arc::new(AtomicU64::new(0));
        let (ready_tx, ready_rx) = mpsc::channel::<Result<Instant, String>>();
        let (netns, ports) = (netns.to_string(), ports.to_vec());
        let (stop2, sent2, passes2) = (stop.clone(), sent.clone(), passes.clone());
        let thread = std::thread::spawn(move || {
            let mut txs = Vec::new();
            for dev in &ports {
                match enter_netns(&netns).and_then(|()| open_channel(dev, false)) {
                    Ok((tx, _rx)) => txs.push(tx),
                    Err(e) => {
                        let _ = ready_tx.send(Err(format!("replayer on {netns}/{dev}: {e}")));
                        return Ok(());
                    }
                }
            }
            let mut start = Instant::now();
            let _ = ready_tx.send(Ok(start));
            let pass_len = shots.last().map_or(Duration::ZERO, |s| s.at) + READ_TIMEOUT;
            loop {
                for s in &shots {
                    loop {
                        if stop2.load(Ordering::Relaxed) {
                            return Ok(());
                        }
                        let due = start + s.at;
                        let now = Instant::now();
                        if now >= due {
                            break;
                        }
                        std::thread::sleep((due - now).min(Duration::from_millis(20)));
                    }
                    let tx = txs
                        .get_mut(s.port)
                        .ok_or_else(|| format!("replayer: no port {}", s.port))?;
                    match tx.send_to(&s.frame, None) {
                        Some(Ok(())) => {
                            sent2.fetch_add(1, Ordering::Relaxed);
                        }
                        Some(Err(e)) => return Err(format!("replayer: send: {e}")),
                        None => return Err("replayer: send: no buffer".to_string()),
                    }
                }
                passes2.fetch_add(1, Ordering::Relaxed);
                if !looped || shots.is_empty() {
                    return Ok(());
                }
                start += pass_len;
            }
        });
        let started = match ready_rx.recv() {
            Ok(Ok(t)) => t,
            Ok(Err(e)) => panic!("{e}"),
            Err(_) => panic!("the replayer thread ended before opening its sockets"),
        };
        Replayer {
            started,
            stop,
            sent,
            passes,
            thread: Some(thread),
        }
    }

    /// When the first pass began.
    pub fn started(&self) -> Instant {
        self.started
    }

    /// Frames sent so far.
    pub fn sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }

    /// Passes completed so far.
    pub fn passes(&self) -> u64 {
        self.passes.load(Ordering::Relaxed)
    }

    /// Whether a single pass is over.
    pub fn finished(&self) -> bool {
        self.thread.as_ref().is_none_or(JoinHandle::is_finished)
    }

    /// Stop; the number of frames sent. Panics if sending failed.
    pub fn stop(mut self) -> u64 {
        self.halt();
        self.sent()
    }

    fn halt(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            match t.join() {
                Ok(Ok(())) => {}
                Ok(Err(e)) => panic!("{e}"),
                Err(_) => panic!("the replayer thread panicked"),
            }
        }
    }
}

impl Drop for Replayer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
