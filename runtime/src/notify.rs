//! The systemd notification protocol (`sd_notify(3)`), the few lines of it the
//! node needs: one datagram per message to `$NOTIFY_SOCKET` (an abstract socket
//! when the path starts with `@`), holding `KEY=value` lines.
//!
//! The node sends `READY=1` once it first holds authority, `STATUS=` when its
//! state, view, token or authority change, `WATCHDOG=1` from its own loop (so a
//! loop that stops running stops sending, and systemd kills the process), and
//! `STOPPING=1` when it starts to leave or stop. Nothing here blocks: the socket
//! is non-blocking and a message that cannot be sent is dropped (systemd is then
//! gone or behind, and the next message says the same again).

use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::time::{Duration, Instant};

/// Where and how to notify the service manager, from the environment.
#[derive(Debug)]
pub(crate) struct Notifier {
    sock: UnixDatagram,
    addr: SocketAddr,
    /// Half of `$WATCHDOG_USEC`, when the watchdog is ours to feed.
    watchdog: Option<Duration>,
    last_watchdog: Option<Instant>,
    ready: bool,
    stopping: bool,
    status: String,
}

impl Notifier {
    /// The notifier `$NOTIFY_SOCKET` asks for, if any. `Err` says why it cannot
    /// be used (a bad address, no socket).
    pub(crate) fn from_env() -> Result<Option<Notifier>, String> {
        let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
            return Ok(None);
        };
        let addr = address(&path).map_err(|e| format!("NOTIFY_SOCKET={path:?}: {e}"))?;
        let sock = UnixDatagram::unbound()
            .and_then(|s| s.set_nonblocking(true).map(|()| s))
            .map_err(|e| format!("cannot open a socket for NOTIFY_SOCKET: {e}"))?;
        Ok(Some(Notifier {
            sock,
            addr,
            watchdog: watchdog_interval(
                std::env::var("WATCHDOG_USEC").ok().as_deref(),
                std::env::var("WATCHDOG_PID").ok().as_deref(),
                std::process::id(),
            ),
            last_watchdog: None,
            ready: false,
            stopping: false,
            status: String::new(),
        }))
    }

    /// How often `WATCHDOG=1` is sent (half of `$WATCHDOG_USEC`), if at all.
    pub(crate) fn watchdog_every(&self) -> Option<Duration> {
        self.watchdog
    }

    fn send(&self, message: &str) {
        let _ = self.sock.send_to_addr(message.as_bytes(), &self.addr);
    }

    /// `READY=1`, once.
    pub(crate) fn ready(&mut self) {
        if !self.ready {
            self.ready = true;
            self.send("READY=1");
        }
    }

    /// `STOPPING=1`, once.
    pub(crate) fn stopping(&mut self) {
        if !self.stopping {
            self.stopping = true;
            self.send("STOPPING=1");
        }
    }

    /// `STATUS=<line>`, when it differs from the last one sent.
    pub(crate) fn status(&mut self, line: String) {
        if line != self.status {
            self.send(&format!("STATUS={line}"));
            self.status = line;
        }
    }

    /// `WATCHDOG=1` if half the interval has passed since the last one; call it
    /// on every turn of the loop. When the next one is due.
    pub(crate) fn tend_watchdog(&mut self, now: Instant) -> Option<Instant> {
        let every = self.watchdog?;
        let due = self.last_watchdog.map_or(now, |t| t + every);
        if now >= due {
            self.send("WATCHDOG=1");
            self.last_watchdog = Some(now);
            return Some(now + every);
        }
        Some(due)
    }
}

/// The socket address `$NOTIFY_SOCKET` names: a path, or an abstract name after
/// `@`.
fn address(path: &std::ffi::OsStr) -> std::io::Result<SocketAddr> {
    use std::os::unix::ffi::OsStrExt;
    let bytes = path.as_bytes();
    match bytes.split_first() {
        Some((b'@', name)) => {
            use std::os::linux::net::SocketAddrExt;
            SocketAddr::from_abstract_name(name)
        }
        Some((b'/', _)) => SocketAddr::from_pathname(path),
        _ => Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "neither an absolute path nor an abstract name (@...)",
        )),
    }
}

/// Half of `usec` (`$WATCHDOG_USEC`), unless the watchdog is meant for another
/// process (`$WATCHDOG_PID`) or the value is not a positive number.
fn watchdog_interval(usec: Option<&str>, pid: Option<&str>, me: u32) -> Option<Duration> {
    if let Some(pid) = pid {
        if pid.trim().parse::<u32>().ok() != Some(me) {
            return None;
        }
    }
    let usec = usec?.trim().parse::<u64>().ok().filter(|&u| u > 0)?;
    Some(Duration::from_micros(usec / 2))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watchdog_interval_is_half_for_this_process_only() {
        let ms = Duration::from_millis;
        assert_eq!(watchdog_interval(Some("200000"), None, 7), Some(ms(100)));
        assert_eq!(
            watchdog_interval(Some("200000"), Some("7"), 7),
            Some(ms(100))
        );
        assert_eq!(watchdog_interval(Some("200000"), Some("8"), 7), None);
        assert_eq!(watchdog_interval(Some("0"), None, 7), None);
        assert_eq!(watchdog_interval(Some("x"), None, 7), None);
        assert_eq!(watchdog_interval(None, Some("7"), 7), None);
    }

    #[test]
    fn messages_arrive_as_datagrams_on_paths_and_abstract_names() {
        let dir = std::env::temp_dir().join(format!("vigil-notify-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("notify.sock");
        let _ = std::fs::remove_file(&path);
        let rx = UnixDatagram::bind(&path).unwrap();
        let abstract_name = format!("vigil-notify-test-{}", std::process::id());
        let abstract_rx = {
            use std::os::linux::net::SocketAddrExt;
            let a = SocketAddr::from_abstract_name(abstract_name.as_bytes()).unwrap();
            UnixDatagram::bind_addr(&a).unwrap()
        };
        for (name, rx) in [
            (path.as_os_str().to_owned(), &rx),
            (format!("@{abstract_name}").into(), &abstract_rx),
        ] {
            let mut n = Notifier {
                sock: UnixDatagram::unbound().unwrap(),
                addr: address(&name).unwrap(),
                watchdog: Some(Duration::from_millis(100)),
                last_watchdog: None,
                ready: false,
                stopping: false,
                status: String::new(),
            };
            n.ready();
            n.ready();
            n.status("member".into());
            n.status("member".into());
            let t0 = Instant::now();
            assert_eq!(n.tend_watchdog(t0), Some(t0 + Duration::from_millis(100)));
            assert_eq!(
                n.tend_watchdog(t0 + Duration::from_millis(50)),
                Some(t0 + Duration::from_millis(100))
            );
            n.stopping();
            let mut got = Vec::new();
            let mut buf = [0u8; 256];
            rx.set_nonblocking(true).unwrap();
            while let Ok(len) = rx.recv(&mut buf) {
                got.push(String::from_utf8_lossy(&buf[..len]).into_owned());
            }
            assert_eq!(
                got,
                ["READY=1", "STATUS=member", "WATCHDOG=1", "STOPPING=1"]
            );
        }
        assert!(address(std::ffi::OsStr::new("relative")).is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
