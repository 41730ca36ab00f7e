#![allow(clippy::disallowed_methods, clippy::disallowed_types)] // driver tests do IO
//! The link drivers against real sockets: UDP over loopback (v4 and v6), and raw
//! Ethernet over a veth pair in a throwaway network namespace (root only).
//!
//! Run with `cargo test -p vigil-llt --features drivers --test drivers`.
#![cfg(feature = "drivers")]

use std::io;
use std::net::SocketAddr;
use std::process::Command;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use vigil_llt::driver::{EtherLink, Link, RxFrame, UdpLink, ETHER_MIN_FRAME};
use vigil_llt::types::{LinkAddr, LinkId};

/// How long a frame sent over loopback or a veth may take to show up.
const DELIVERY: Duration = Duration::from_secs(5);
/// Marks the re-executed test binary that runs inside the network namespace.
const INNER_ENV: &str = "VIGIL_DRV_NETNS";
/// What the inner run prints last, so the outer run knows it really ran.
const INNER_DONE: &str = "ether_in_netns_inner: all checks passed";
const ETHERTYPE: u16 = 0xcafe;

fn addr(s: &str) -> SocketAddr {
    s.parse().expect("test address")
}

async fn recv(rx: &mut mpsc::Receiver<RxFrame>) -> RxFrame {
    tokio::time::timeout(DELIVERY, rx.recv())
        .await
        .expect("no frame within the delivery time")
        .expect("queue closed")
}

/// Waits until `cond` holds, polling; panics with `what` after `DELIVERY`.
async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + DELIVERY;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Two links on `ip` (port 0), frames both ways, stats, and `AddrInUse`.
async fn udp_exchange(ip: &str) {
    let any = addr(&format!("{ip}:0"));
    let (tx_a, mut rx_a) = mpsc::channel(16);
    let (tx_b, mut rx_b) = mpsc::channel(16);
    let a = UdpLink::open(LinkId(0), any, None, Some(46), tx_a).expect("open a");
    let b = UdpLink::open(LinkId(3), any, None, None, tx_b).expect("open b");
    let (a_addr, b_addr) = (a.local_addr(), b.local_addr());
    assert_ne!(a_addr.port(), 0, "the kernel's port is read back");
    assert_eq!(a_addr.ip(), any.ip());

    a.send_to(b_addr, b"hello b").expect("send a->b");
    let f = recv(&mut rx_b).await;
    assert_eq!(f.link, LinkId(3));
    assert_eq!(f.from, LinkAddr::Udp(a_addr));
    assert_eq!(f.bytes, b"hello b");

    b.send_to(a_addr, b"hello a").expect("send b->a");
    b.send_to(a_addr, &[0xab; 1400]).expect("send b->a, larger");
    let f = recv(&mut rx_a).await;
    assert_eq!(
        (f.link, f.from, f.bytes.as_slice()),
        (LinkId(0), LinkAddr::Udp(b_addr), &b"hello a"[..])
    );
    let f = recv(&mut rx_a).await;
    assert_eq!(f.bytes, vec![0xab; 1400]);

    // Through the enum: the right kind of address goes, the others are refused.
    let link_a = Link::from(a);
    assert_eq!(link_a.local_addr(), LinkAddr::Udp(a_addr));
    assert_eq!(link_a.id(), LinkId(0));
    link_a
        .send(Some(LinkAddr::Udp(b_addr)), b"via enum")
        .expect("send via Link");
    assert_eq!(recv(&mut rx_b).await.bytes, b"via enum");
    let no_broadcast = link_a.send(None, b"x").expect_err("UDP has no broadcast");
    assert_eq!(no_broadcast.kind(), io::ErrorKind::InvalidInput);
    let wrong_kind = link_a
        .send(Some(LinkAddr::Ether([2, 0, 0, 0, 0, 1])), b"x")
        .expect_err("a MAC on a UDP link");
    assert_eq!(wrong_kind.kind(), io::ErrorKind::InvalidInput);

    let sa = link_a.stats();
    assert_eq!((sa.tx_frames, sa.rx_frames, sa.tx_errors), (2, 2, 0));
    let sb = b.stats();
    assert_eq!((sb.tx_frames, sb.rx_frames, sb.rx_queue_full), (2, 2, 0));

    // A second daemon on the same address.
    let (tx_c, _rx_c) = mpsc::channel(1);
    let err = UdpLink::open(LinkId(0), a_addr, None, None, tx_c).expect_err("address taken");
    assert_eq!(err.kind(), io::ErrorKind::AddrInUse, "{err}");
    assert!(
        err.to_string().contains(&a_addr.to_string()),
        "names the address: {err}"
    );
    assert!(
        err.to_string().starts_with("udp link 0: cannot bind"),
        "{err}"
    );
}

#[tokio::test]
async fn udp_v4_frames_both_ways() {
    udp_exchange("127.0.0.1").await;
}

#[tokio::test]
async fn udp_v6_frames_both_ways() {
    if let Err(e) = std::net::UdpSocket::bind("[::1]:0") {
        println!("skipping: ::1 is not available here ({e})");
        return;
    }
    udp_exchange("[::1]").await;
}

#[tokio::test]
async fn udp_full_queue_drops_and_counts() {
    let any = addr("127.0.0.1:0");
    let (tx_a, _rx_a) = mpsc::channel(1);
    let (tx_b, mut rx_b) = mpsc::channel(1); // nobody reads it until the end
    let a = UdpLink::open(LinkId(0), any, None, None, tx_a).expect("open a");
    let b = UdpLink::open(LinkId(0), any, None, None, tx_b).expect("open b");
    for i in 0..5u8 {
        a.send_to(b.local_addr(), &[i]).expect("send");
    }
    eventually("five frames read", || {
        let s = b.stats();
        s.rx_frames + s.rx_queue_full == 5
    })
    .await;
    let s = b.stats();
    assert_eq!((s.rx_frames, s.rx_queue_full), (1, 4));
    // The reader kept going: the queued frame is the first one, and a frame sent
    // after the queue drained gets through.
    assert_eq!(recv(&mut rx_b).await.bytes, [0]);
    a.send_to(b.local_addr(), b"later").expect("send");
    assert_eq!(recv(&mut rx_b).await.bytes, b"later");
    assert_eq!(b.stats().rx_frames, 2);
}

#[tokio::test]
async fn udp_open_errors_name_what_failed() {
    let (tx, _rx) = mpsc::channel(1);
    let err = UdpLink::open(LinkId(1), addr("127.0.0.1:0"), None, Some(64), tx.clone())
        .expect_err("dscp is six bits");
    assert_eq!(err.kind(), io::ErrorKind::InvalidInput);

    let err = UdpLink::open(
        LinkId(1),
        addr("127.0.0.1:0"),
        Some("vigil-nodev0"),
        None,
        tx,
    )
    .expect_err("no such device");
    assert!(
        err.to_string().contains("vigil-nodev0"),
        "names the device: {err}"
    );
}

#[tokio::test]
async fn udp_reader_stops_when_link_dropped() {
    let (tx, _rx) = mpsc::channel(1);
    let a = UdpLink::open(LinkId(0), addr("127.0.0.1:0"), None, None, tx).expect("open");
    let bound = a.local_addr();
    drop(a);
    // Once the aborted reader has released the socket, the address is free again.
    let (tx, _rx) = mpsc::channel(1);
    let deadline = Instant::now() + DELIVERY;
    loop {
        match UdpLink::open(LinkId(0), bound, None, None, tx.clone()) {
            Ok(_) => break,
            Err(e) if e.kind() == io::ErrorKind::AddrInUse && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(5)).await
            }
            Err(e) => panic!("address not released: {e}"),
        }
    }
}

#[test]
fn udp_open_outside_a_runtime_is_an_error() {
    let (tx, _rx) = mpsc::channel(1);
    let err =
        UdpLink::open(LinkId(0), addr("127.0.0.1:0"), None, None, tx).expect_err("needs a runtime");
    assert!(err.to_string().contains("tokio runtime"), "{err}");
}

// ---------------------------------------------------------------------------
// Ethernet, in a network namespace with a veth pair (root only).

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("run ip");
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Deletes the namespace (and with it the veth pair), whatever happens.
struct Netns(String);

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

/// Builds `vigil-drv-<pid>` with `vd0 <-> vd1`, then runs
/// [`ether_in_netns_inner`] inside it by re-executing this test binary.
#[test]
fn ether_in_netns() {
    if std::env::var_os(INNER_ENV).is_some() {
        return; // we are the inner run
    }
    if !is_root() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "CI runs as root: the Ethernet driver test cannot be skipped there"
        );
        println!("skipping: needs root for network namespaces and raw sockets");
        return;
    }
    let ns = format!("vigil-drv-{}", std::process::id());
    ip(&["netns", "add", &ns]);
    let _cleanup = Netns(ns.clone());
    ip(&[
        "-n", &ns, "link", "add", "vd0", "type", "veth", "peer", "name", "vd1",
    ]);
    ip(&["-n", &ns, "link", "set", "vd0", "up"]);
    ip(&["-n", &ns, "link", "set", "vd1", "up"]);

    let exe = std::env::current_exe().expect("current exe");
    let out = Command::new("ip")
        .args(["netns", "exec", &ns])
        .arg(exe)
        .args([
            "--exact",
            "ether_in_netns_inner",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(INNER_ENV, &ns)
        .output()
        .expect("run the inner test");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("--- inner run ---\n{stdout}{stderr}--- end of inner run ---");
    assert!(out.status.success(), "the inner Ethernet test failed");
    assert!(
        stdout.contains(INNER_DONE),
        "the inner Ethernet test did not run"
    );
}

/// The Ethernet checks proper; a no-op unless run by [`ether_in_netns`].
#[tokio::test]
async fn ether_in_netns_inner() {
    let Some(ns) = std::env::var_os(INNER_ENV) else {
        return;
    };
    println!("ether_in_netns_inner: in namespace {ns:?}");

    let (tx_a, mut rx_a) = mpsc::channel(64);
    let (tx_b, mut rx_b) = mpsc::channel(64);
    let a = EtherLink::open(LinkId(2), "vd0", ETHERTYPE, tx_a).expect("open vd0");
    let b = EtherLink::open(LinkId(2), "vd1", ETHERTYPE, tx_b).expect("open vd1");
    let (mac_a, mac_b) = (a.mac(), b.mac());
    assert_ne!(mac_a, mac_b);

    // Unicast both ways; short payloads arrive padded to the minimum frame.
    a.send(Some(mac_b), b"unicast a->b").expect("send");
    let f = recv(&mut rx_b).await;
    assert_eq!((f.link, f.from), (LinkId(2), LinkAddr::Ether(mac_a)));
    assert_eq!(f.bytes.len(), ETHER_MIN_FRAME - 14);
    assert_eq!(&f.bytes[..12], b"unicast a->b");
    assert!(f.bytes[12..].iter().all(|&x| x == 0));

    b.send(Some(mac_a), &[0x5a; 1400]).expect("send");
    let f = recv(&mut rx_a).await;
    assert_eq!(f.from, LinkAddr::Ether(mac_b));
    assert_eq!(f.bytes, vec![0x5a; 1400]);

    // Broadcast both ways.
    a.send(None, b"broadcast from a").expect("send");
    let f = recv(&mut rx_b).await;
    assert_eq!(f.from, LinkAddr::Ether(mac_a));
    assert_eq!(&f.bytes[..16], b"broadcast from a");
    b.send(None, b"broadcast from b").expect("send");
    let f = recv(&mut rx_a).await;
    assert_eq!(f.from, LinkAddr::Ether(mac_b));
    assert_eq!(&f.bytes[..16], b"broadcast from b");

    // Another EtherType on the same wire is not ours.
    let (tx_c, _rx_c) = mpsc::channel(4);
    let c = EtherLink::open(LinkId(5), "vd1", 0xbeef, tx_c).expect("open vd1 again");
    c.send(None, b"not for a").expect("send");
    c.send(Some(mac_a), b"not for a either").expect("send");

    // Through the enum.
    let link_b = Link::from(b);
    assert_eq!(link_b.local_addr(), LinkAddr::Ether(mac_b));
    link_b
        .send(Some(LinkAddr::Ether(mac_a)), b"via enum")
        .expect("send");
    assert_eq!(&recv(&mut rx_a).await.bytes[..8], b"via enum");
    let err = link_b
        .send(Some(LinkAddr::Udp(addr("127.0.0.1:1"))), b"x")
        .expect_err("a socket address on an Ethernet link");
    assert_eq!(err.kind(), io::ErrorKind::InvalidInput);

    // Nothing else arrived: no own frames looped back, no foreign EtherType.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(rx_a.try_recv().is_err(), "unexpected frame on a");
    assert!(rx_b.try_recv().is_err(), "unexpected frame on b");

    let sa = a.stats();
    assert_eq!(
        (sa.tx_frames, sa.rx_frames, sa.rx_queue_full, sa.tx_errors),
        (2, 3, 0, 0)
    );
    let sb = link_b.stats();
    assert_eq!(
        (sb.tx_frames, sb.rx_frames, sb.rx_queue_full, sb.tx_errors),
        (3, 2, 0, 0)
    );

    // Errors name the interface and what is wrong.
    let (tx, _rx) = mpsc::channel(1);
    let err = EtherLink::open(LinkId(1), "vigil-nope", ETHERTYPE, tx.clone()).expect_err("absent");
    assert_eq!(err.kind(), io::ErrorKind::NotFound);
    assert!(err.to_string().contains("vigil-nope"), "{err}");
    let err = EtherLink::open(LinkId(1), "lo", ETHERTYPE, tx.clone()).expect_err("no MAC");
    assert!(err.to_string().contains("lo has no MAC address"), "{err}");
    let err = EtherLink::open(LinkId(1), "vd0", 0x0100, tx.clone()).expect_err("a length");
    assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
    let err = std::thread::spawn(move || {
        drop_cap_net_raw();
        EtherLink::open(LinkId(1), "vd0", ETHERTYPE, tx).expect_err("no CAP_NET_RAW")
    })
    .join()
    .expect("thread");
    assert_eq!(
        err.to_string(),
        "ether link 1: cannot open raw socket on vd0: Operation not permitted \
         (needs root or CAP_NET_RAW)"
    );

    // Dropping a link stops its reader promptly.
    let started = Instant::now();
    drop(a);
    drop(link_b);
    drop(c);
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "drop took {:?}",
        started.elapsed()
    );

    println!("{INNER_DONE}");
}

/// Drops CAP_NET_RAW from the calling thread's effective set (Linux capabilities
/// are per thread), so that opening a raw socket fails as it does for a user.
fn drop_cap_net_raw() {
    #[repr(C)]
    struct Header {
        version: u32,
        pid: i32,
    }
    #[repr(C)]
    #[derive(Clone, Copy, Default)]
    struct Data {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    const VERSION_3: u32 = 0x2008_0522;
    const CAP_NET_RAW: u32 = 13;
    let mut header = Header {
        version: VERSION_3,
        pid: 0,
    };
    let mut data = [Data::default(); 2];
    // SAFETY: capget/capset with a v3 header read and write two data structs.
    unsafe {
        assert_eq!(
            libc::syscall(libc::SYS_capget, &mut header, data.as_mut_ptr()),
            0,
            "capget"
        );
        data[0].effective &= !(1 << CAP_NET_RAW);
        assert_eq!(
            libc::syscall(libc::SYS_capset, &mut header, data.as_ptr()),
            0,
            "capset"
        );
    }
}
