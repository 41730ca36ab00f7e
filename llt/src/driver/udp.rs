//! `udp` and `udp6` links: one UDP socket, built with socket2, read by a tokio task.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol, SockRef, Socket, Type};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::{describe, push, Counters, DriverStats, Pushed, RxFrame};
use crate::types::{LinkAddr, LinkId};

/// The receive buffer asked of the kernel (it caps this at `net.core.rmem_max`).
const RECV_BUFFER_BYTES: usize = 1 << 20;
/// The reader's buffer: the largest UDP payload.
const READ_BUFFER_BYTES: usize = 64 * 1024;
/// How long the reader rests after an unexpected receive error, so that a
/// persistent one cannot spin a core.
const ERROR_BACKOFF: Duration = Duration::from_millis(100);
/// The highest DSCP value (six bits).
const MAX_DSCP: u8 = 63;

/// An open UDP link: a bound socket and the task that reads it.
///
/// Dropping the link stops its reader and closes the socket.
#[derive(Debug)]
pub struct UdpLink {
    link: LinkId,
    socket: Arc<tokio::net::UdpSocket>,
    local: SocketAddr,
    counters: Arc<Counters>,
    reader: JoinHandle<()>,
}

impl UdpLink {
    /// Binds a UDP socket to `bind` (IPv4 or IPv6, IPv6 sockets are v6-only) and
    /// starts a reader task that queues every datagram on `rx`.
    ///
    /// - `device`: bind to this network interface (`SO_BINDTODEVICE`, Linux only).
    /// - `dscp`: mark outgoing packets with this DSCP (`0..=63`), written into the
    ///   TOS / traffic class byte as `dscp << 2`.
    ///
    /// `SO_REUSEADDR` stays off, so a second daemon on the same address fails
    /// with `AddrInUse`. Every error names the link and what could not be done.
    ///
    /// Must be called inside a tokio runtime with IO enabled; outside any runtime
    /// it returns an error (a runtime without its IO driver makes tokio panic).
    pub fn open(
        link: LinkId,
        bind: SocketAddr,
        device: Option<&str>,
        dscp: Option<u8>,
        rx: mpsc::Sender<RxFrame>,
    ) -> io::Result<UdpLink> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| {
            io::Error::other(format!(
                "udp link {link}: must be opened inside a tokio runtime"
            ))
        })?;
        let socket = build_socket(link, bind, device, dscp)?;
        let socket = tokio::net::UdpSocket::from_std(socket).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("udp link {link}: cannot register {bind} with tokio: {e}"),
            )
        })?;
        let local = socket.local_addr().map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("udp link {link}: cannot read the address bound for {bind}: {e}"),
            )
        })?;
        let socket = Arc::new(socket);
        let counters = Arc::new(Counters::default());
        let reader = runtime.spawn(read_loop(link, socket.clone(), rx, counters.clone()));
        tracing::debug!(link = link.0, %local, ?device, ?dscp, "udp link open");
        Ok(UdpLink {
            link,
            socket,
            local,
            counters,
            reader,
        })
    }

    /// Sends one datagram without waiting (callable from any thread, inside a
    /// runtime or not). A full socket buffer drops the frame,
    /// counts it in `tx_would_block` and returns `Ok`; other errors are counted in
    /// `tx_errors` and returned.
    pub fn send_to(&self, to: SocketAddr, bytes: &[u8]) -> io::Result<()> {
        // Straight to the kernel on the nonblocking socket: tokio's `try_send_to`
        // answers WouldBlock until its reactor has seen the socket writable once,
        // which would drop the first frames after opening. Nothing awaits
        // writability on this socket, so bypassing tokio's readiness is harmless.
        match SockRef::from(self.socket.as_ref()).send_to(bytes, &to.into()) {
            Ok(_) => {
                self.counters.tx_frame();
                Ok(())
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                self.counters.tx_would_block();
                Ok(())
            }
            Err(e) => {
                self.counters.tx_error();
                Err(io::Error::new(
                    e.kind(),
                    format!(
                        "udp link {}: cannot send to {to}: {}",
                        self.link,
                        describe(&e)
                    ),
                ))
            }
        }
    }

    /// The address the socket is bound to (with the port the kernel chose when
    /// bound to port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local
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

impl Drop for UdpLink {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

/// The socket, configured and bound, still blocking-API but set nonblocking.
fn build_socket(
    link: LinkId,
    bind: SocketAddr,
    device: Option<&str>,
    dscp: Option<u8>,
) -> io::Result<std::net::UdpSocket> {
    let fail = |what: String, e: io::Error| {
        io::Error::new(
            e.kind(),
            format!("udp link {link}: {what}: {}", describe(&e)),
        )
    };
    let socket = Socket::new(Domain::for_address(bind), Type::DGRAM, Some(Protocol::UDP))
        .map_err(|e| fail(format!("cannot create a socket for {bind}"), e))?;
    if bind.is_ipv6() {
        socket
            .set_only_v6(true)
            .map_err(|e| fail("cannot set IPV6_V6ONLY".into(), e))?;
    }
    socket
        .set_reuse_address(false)
        .map_err(|e| fail("cannot clear SO_REUSEADDR".into(), e))?;
    if let Some(device) = device {
        bind_device(&socket, device)
            .map_err(|e| fail(format!("cannot bind to device {device:?}"), e))?;
    }
    if let Some(dscp) = dscp {
        if dscp > MAX_DSCP {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("udp link {link}: dscp {dscp} is out of range (0..={MAX_DSCP})"),
            ));
        }
        let tos = u32::from(dscp) << 2;
        let set = if bind.is_ipv6() {
            socket.set_tclass_v6(tos)
        } else {
            socket.set_tos(tos)
        };
        set.map_err(|e| fail(format!("cannot set dscp {dscp}"), e))?;
    }
    if let Err(e) = socket.set_recv_buffer_size(RECV_BUFFER_BYTES) {
        // Not fatal: the default buffer works, it only absorbs smaller bursts.
        tracing::warn!(link = link.0, error = %e, "udp link: cannot enlarge SO_RCVBUF");
    }
    socket
        .set_nonblocking(true)
        .map_err(|e| fail("cannot make the socket nonblocking".into(), e))?;
    socket.bind(&bind.into()).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("udp link {link}: cannot bind {bind}: {}", describe(&e)),
        )
    })?;
    Ok(socket.into())
}

#[cfg(target_os = "linux")]
fn bind_device(socket: &Socket, device: &str) -> io::Result<()> {
    if device.is_empty() {
        // An empty name would *remove* the binding.
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "the device name is empty",
        ));
    }
    socket.bind_device(Some(device.as_bytes()))
}

#[cfg(not(target_os = "linux"))]
fn bind_device(_socket: &Socket, _device: &str) -> io::Result<()> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "binding to a device is supported on Linux only",
    ))
}

/// Reads datagrams until the queue's receiver is gone (or the task is aborted
/// when the link is dropped).
async fn read_loop(
    link: LinkId,
    socket: Arc<tokio::net::UdpSocket>,
    rx: mpsc::Sender<RxFrame>,
    counters: Arc<Counters>,
) {
    let mut buf = vec![0u8; READ_BUFFER_BYTES];
    let mut failing = false;
    loop {
        match socket.recv_from(&mut buf).await {
            Ok((len, from)) => {
                failing = false;
                let frame = RxFrame {
                    link,
                    from: LinkAddr::Udp(from),
                    bytes: buf[..len].to_vec(),
                    at: Instant::now(),
                };
                if push(&rx, &counters, frame) == Pushed::Closed {
                    tracing::debug!(link = link.0, "udp link: queue closed, reader stops");
                    return;
                }
            }
            // Transient: a signal, a spurious wakeup, or an ICMP error for an
            // earlier send reported on this socket.
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::Interrupted
                        | io::ErrorKind::WouldBlock
                        | io::ErrorKind::ConnectionRefused
                        | io::ErrorKind::ConnectionReset
                ) => {}
            Err(e) => {
                if !failing {
                    tracing::warn!(link = link.0, error = %e, "udp link: receive failed");
                    failing = true;
                }
                tokio::time::sleep(ERROR_BACKOFF).await;
            }
        }
    }
}
