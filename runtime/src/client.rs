//! A small blocking client of the control socket, for programs that talk to a
//! running node (the inspection commands and `vigil watch` use it too). The
//! protocol is in `docs/control.md`.
//!
//! ```no_run
//! use std::path::Path;
//! let socket = Path::new("/run/vigil/node1.sock");
//! for line in vigil_runtime::client::subscribe(socket) {
//!     match line {
//!         Ok(a) if a.is_valid_primary() => println!("primary, token {:?}", a.token),
//!         Ok(a) => println!("not primary (event {})", a.event),
//!         Err(e) => {
//!             eprintln!("{e}");
//!             break;
//!         }
//!     }
//! }
//! ```

pub use crate::control::{command, request, status, AuthorityLine, Request, Response, PROTOCOL};

use crate::control::MAX_RESPONSE;
use std::io::{BufRead, BufReader, Read as _, Write as _};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The protocol version the daemon behind `socket` speaks, and who answers:
/// `(protocol, node name)`.
pub fn version(socket: &Path) -> Result<(u32, String), String> {
    match request(socket, &Request::Version)? {
        Response::Version {
            protocol,
            node_name,
            ..
        } => Ok((protocol, node_name)),
        Response::Error { message } | Response::Busy { message } => Err(message),
        other => Err(format!(
            "{}: unexpected answer to a version request: {other:?}",
            socket.display()
        )),
    }
}

/// Follow the node behind `socket`: the first item is its authority now, then
/// one per change of authority, view or primary, as the daemon writes them.
///
/// Blocks in `next()` until the next change. An `Err` item says why the
/// subscription cannot go on (the daemon could not be reached, refused, or went
/// away); the iterator ends after it.
pub fn subscribe(socket: &Path) -> Subscription {
    Subscription {
        socket: socket.to_path_buf(),
        state: State::NotConnected,
    }
}

/// A subscription to a node's authority; see [`subscribe`].
#[derive(Debug)]
pub struct Subscription {
    socket: PathBuf,
    state: State,
}

#[derive(Debug)]
enum State {
    NotConnected,
    Reading(BufReader<UnixStream>),
    Ended,
}

impl Subscription {
    fn connect(&self) -> Result<BufReader<UnixStream>, String> {
        let shown = self.socket.display();
        let mut stream = UnixStream::connect(&self.socket)
            .map_err(|e| format!("cannot reach the vigil daemon at {shown}: {e}"))?;
        let _ = stream.set_write_timeout(Some(Duration::from_secs(5)));
        let mut req = serde_json::to_string(&Request::Subscribe).map_err(|e| e.to_string())?;
        req.push('\n');
        // A refusal is answered before the request is read: read it even when
        // the request could not be written.
        let _ = stream.write_all(req.as_bytes());
        Ok(BufReader::new(stream))
    }

    fn read(&self, reader: &mut BufReader<UnixStream>) -> Result<AuthorityLine, String> {
        let shown = self.socket.display();
        let mut text = String::new();
        let n = reader
            .by_ref()
            .take(MAX_RESPONSE as u64)
            .read_line(&mut text)
            .map_err(|e| format!("{shown}: {e}"))?;
        if n == 0 {
            return Err(format!(
                "{shown}: the daemon closed the subscription (stopped?)"
            ));
        }
        match serde_json::from_str::<AuthorityLine>(&text) {
            Ok(line) => Ok(line),
            Err(e) => match serde_json::from_str::<Response>(&text) {
                Ok(Response::Error { message } | Response::Busy { message }) => {
                    Err(format!("{shown}: {message}"))
                }
                _ => Err(format!("{shown}: bad subscription line: {e}")),
            },
        }
    }
}

impl Iterator for Subscription {
    type Item = Result<AuthorityLine, String>;

    fn next(&mut self) -> Option<Self::Item> {
        if let State::NotConnected = self.state {
            match self.connect() {
                Ok(r) => self.state = State::Reading(r),
                Err(e) => {
                    self.state = State::Ended;
                    return Some(Err(e));
                }
            }
        }
        let State::Reading(mut reader) = std::mem::replace(&mut self.state, State::Ended) else {
            return None;
        };
        let item = self.read(&mut reader);
        if item.is_ok() {
            self.state = State::Reading(reader);
        }
        Some(item)
    }
}
