//! A service that embeds a vigil node and writes to a store only while it is the
//! valid primary, stamping every write with the fencing token.
//!
//! ```text
//! guarded_service store --listen /tmp/guarded/store.sock
//! guarded_service run --config cluster.toml --node n0 --store /tmp/guarded/store.sock
//! ```
//!
//! The store speaks one line per write over a Unix socket:
//! `WRITE <node> <token> <seq> <valid_until_mono_ns>` → `OK` or `REFUSED <highest>`.
//! It refuses a token lower than the highest it has accepted, which is what makes a
//! stale primary harmless even when it wakes up from a freeze and writes before it
//! notices (the lease check below narrows that to a few instructions; the token
//! closes it). The `vigil` binary includes this very file as a module (hidden
//! subcommand `vigil guarded-service`), so `vigil drill guarded` needs nothing else.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use vigil_runtime::{Authority, ClusterConfig, ControlSocket, Ending, Options, SelfFenceAction};

/// Exit code of a service whose node fenced itself (the same as `vigil daemon`).
pub const EXIT_FENCED: u8 = 4;

/// CLOCK_MONOTONIC in nanoseconds: the clock `Instant` uses on Linux, as a number
/// that another process on this host can compare (the store logs receipt times
/// on it, the service sends its lease end on it).
pub fn mono_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the timespec we own; CLOCK_MONOTONIC exists.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// `at` on CLOCK_MONOTONIC in ns (`Instant` itself cannot be sent anywhere).
fn instant_ns(at: Instant) -> u64 {
    let (now, now_ns) = (Instant::now(), mono_ns());
    now_ns + at.saturating_duration_since(now).as_nanos() as u64
}

/// One line of this program's log (JSON, on standard output): what it did, when.
fn note(event: &str, fields: serde_json::Value) {
    let mut line = serde_json::json!({"event": event, "mono_ns": mono_ns()});
    if let (Some(l), serde_json::Value::Object(f)) = (line.as_object_mut(), fields) {
        l.extend(f);
    }
    println!("{line}");
}

/// `guarded_service store|run ...`; the arguments after the program name.
pub fn run(args: Vec<String>) -> ExitCode {
    let flag = |name: &str| {
        let at = args.iter().position(|a| a == name)?;
        args.get(at + 1).cloned()
    };
    let result = match args.first().map(String::as_str) {
        Some("store") => match flag("--listen") {
            Some(path) => serve_store(path.into(), std::io::stdout()),
            None => Err("store needs --listen PATH".into()),
        },
        Some("run") => match (flag("--config"), flag("--node"), flag("--store")) {
            (Some(config), Some(node), Some(store)) => {
                let every = flag("--every-ms")
                    .and_then(|m| m.parse().ok())
                    .unwrap_or(20);
                let socket = flag("--socket").map(PathBuf::from);
                guard(
                    config.into(),
                    &node,
                    store.into(),
                    socket,
                    Duration::from_millis(every),
                )
            }
            _ => Err("run needs --config FILE --node NAME --store PATH".into()),
        },
        _ => Err(
            "usage: guarded_service store --listen PATH | run --config FILE \
                  --node NAME --store PATH [--socket PATH] [--every-ms MS]"
                .into(),
        ),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("guarded_service: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Run node `node` and write to the store every `every` while it is the primary.
fn guard(
    config: PathBuf,
    node: &str,
    store: PathBuf,
    socket: Option<PathBuf>,
    every: Duration,
) -> Result<u8, String> {
    // The node's own events (views, races, self-fence) as text on standard error.
    vigil_runtime::logging::init(vigil_runtime::logging::LogFormat::Text);
    let cfg = ClusterConfig::load(&config).map_err(|e| e.to_string())?;
    let options = Options {
        config_file: Some(config),
        // The same control socket `vigil daemon` serves: lltstat, `vigil stop`,
        // `vigil fault` work against this process.
        control_socket: socket.map_or(ControlSocket::FromConfig, ControlSocket::At),
        // A fenced node must stop the service, not reboot the host: by the time
        // this runs the published authority is already gone, so no write follows.
        self_fence: SelfFenceAction::Callback(Box::new(|reason| {
            note(
                "service.fenced",
                serde_json::json!({"reason": format!("{reason:?}")}),
            )
        })),
        ..Options::default()
    };
    let handle = vigil_runtime::start(cfg, node, options).map_err(|e| e.to_string())?;
    note(
        "service.started",
        serde_json::json!({"node": handle.id().0}),
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let ending: Result<Ending, String> = rt.block_on(async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .map_err(|e| e.to_string())?;
        let mut authority = handle.authority();
        let mut store_conn: Option<(UnixStream, BufReader<UnixStream>)> = None;
        let mut seq = 0u64;
        let mut tick = tokio::time::interval(every);
        loop {
            tokio::select! {
                ending = handle.wait() => return Ok(ending),
                _ = term.recv() => { handle.shutdown(); return Ok(handle.wait().await) }
                changed = authority.changed() => {
                    if changed.is_err() {
                        return Ok(handle.wait().await); // the node has stopped
                    }
                    log_authority(authority.borrow_and_update().as_ref());
                    // Fall through: a new primary writes at once, without a tick.
                }
                _ = tick.tick() => {}
            }
            // The check right before the write: `borrow()` holds the newest lease
            // end, and `is_valid_primary` compares it with a fresh Instant::now().
            // The watch wakes us on every change of role, but a frozen process
            // wakes up to an old value that only the clock can expose.
            let (token, valid_until) = match authority.borrow().as_ref() {
                Some(a) if a.is_valid_primary() => (a.token.0, instant_ns(a.valid_until)),
                _ => continue,
            };
            seq += 1;
            let line = format!("WRITE {} {token} {seq} {valid_until}\n", handle.id().0);
            let reply = write_line(&mut store_conn, &store, &line);
            note(
                "service.write",
                serde_json::json!({"token": token, "seq": seq, "valid_until_ns": valid_until,
                                   "reply": reply.as_deref().unwrap_or_else(|e| e)}),
            );
        }
    });
    let ending = ending?;
    let _ = handle.join();
    note(
        "service.ended",
        serde_json::json!({"ending": format!("{ending:?}")}),
    );
    vigil_runtime::logging::flush(Duration::from_millis(500));
    Ok(match ending {
        Ending::Fenced(_) => EXIT_FENCED,
        Ending::Left | Ending::Stopped => 0,
        Ending::Refused(_) | Ending::Failed(_) => 1,
    })
}

fn log_authority(a: Option<&Authority>) {
    let fields = match a {
        Some(a) => serde_json::json!({"token": a.token.0, "installed": a.installed.0,
            "primary": a.primary.0, "is_primary": a.is_primary,
            "valid_until_ns": instant_ns(a.valid_until)}),
        None => serde_json::json!({"token": null}),
    };
    note("service.authority", fields);
}

/// Send one line to the store (connecting first if need be) and read its answer.
/// A broken connection is dropped and made again on the next write.
fn write_line(
    conn: &mut Option<(UnixStream, BufReader<UnixStream>)>,
    store: &PathBuf,
    line: &str,
) -> Result<String, String> {
    if conn.is_none() {
        let s = UnixStream::connect(store).map_err(|e| format!("connect: {e}"))?;
        let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
        let r = s.try_clone().map_err(|e| e.to_string())?;
        *conn = Some((s, BufReader::new(r)));
    }
    let (s, r) = conn.as_mut().ok_or("no connection")?;
    let mut reply = String::new();
    let result = s
        .write_all(line.as_bytes())
        .and_then(|_| r.read_line(&mut reply));
    match result {
        Ok(n) if n > 0 => Ok(reply.trim_end().to_string()),
        Ok(_) | Err(_) => {
            *conn = None;
            Err(format!("store connection lost: {result:?}"))
        }
    }
}

/// The store: serialises writes, accepts a token at least as high as any it has
/// accepted, and logs every write as one JSON line with its receipt time.
pub fn serve_store(path: PathBuf, log: impl Write + Send + 'static) -> Result<u8, String> {
    let _ = std::fs::remove_file(&path);
    let listener = UnixListener::bind(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let state = Arc::new(Mutex::new((0u64, log)));
    for conn in listener.incoming() {
        let Ok(conn) = conn else { continue };
        let state = Arc::clone(&state);
        std::thread::spawn(move || {
            let Ok(mut out) = conn.try_clone() else {
                return;
            };
            for line in BufReader::new(conn).lines() {
                let Ok(line) = line else { return };
                let w: Vec<&str> = line.split_whitespace().collect();
                let parsed: Option<Vec<u64>> = match w.as_slice() {
                    ["WRITE", rest @ ..] if rest.len() == 4 => {
                        rest.iter().map(|x| x.parse().ok()).collect()
                    }
                    _ => None,
                };
                let Some(&[node, token, seq, valid_until]) = parsed.as_deref() else {
                    let _ = out.write_all(b"ERROR expected WRITE <node> <token> <seq> <ns>\n");
                    continue;
                };
                // One lock for check, log and reply: writes are totally ordered.
                let Ok(mut st) = state.lock() else { return };
                let at = mono_ns();
                let accepted = token >= st.0;
                st.0 = st.0.max(token);
                let rec = serde_json::json!({"at_ns": at, "node": node, "token": token,
                    "seq": seq, "valid_until_ns": valid_until, "accepted": accepted});
                let _ = writeln!(st.1, "{rec}");
                let reply = if accepted {
                    "OK\n".to_string()
                } else {
                    format!("REFUSED {}\n", st.0)
                };
                let _ = out.write_all(reply.as_bytes());
            }
        });
    }
    Ok(0)
}

#[allow(dead_code)] // the vigil binary includes this file as a module
fn main() -> ExitCode {
    run(std::env::args().skip(1).collect())
}
