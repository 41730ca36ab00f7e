//! Logging through tracing: text for people, JSON for machines. Every event the
//! operator may alert on carries a stable `event` name (see [`crate::events`]) and
//! a wall-clock `ts_us`.
//!
//! The daemon's lines never block the node: they go through a bounded queue to a
//! writer thread, and when the queue is full (a log reader that stopped reading, a
//! full pipe) a line is dropped and counted ([`lost_lines`], shown by `lltstat`)
//! rather than waited for. A write that fails (a closed or non-blocking standard
//! error) is counted the same way; nothing here panics.

use std::io::Write;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{sync_channel, SyncSender, TrySendError};
use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// How the daemon writes its log lines on standard error.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    /// One line per event for people.
    Text,
    /// One JSON object per line, with the fields flattened.
    Json,
}

/// Lines queued for the writer thread before new ones are dropped.
const QUEUE_LINES: usize = 8192;

/// Lines dropped or not written since start.
static LOST: AtomicU64 = AtomicU64::new(0);
/// Lines queued and not yet written.
static PENDING: AtomicUsize = AtomicUsize::new(0);
/// The queue to the writer thread, once started.
static QUEUE: OnceLock<SyncSender<Vec<u8>>> = OnceLock::new();

/// Log lines lost since start: dropped because the writer was behind (a log
/// reader that stopped reading), or not written because standard error refused.
pub fn lost_lines() -> u64 {
    LOST.load(Ordering::Relaxed)
}

/// Wall-clock microseconds since the Unix epoch.
pub fn wall_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

/// Write a message to standard error without ever panicking or blocking for
/// long: through the log writer's queue when it runs, directly otherwise.
pub fn say(message: &str) {
    let mut line = message.as_bytes().to_vec();
    line.push(b'\n');
    match QUEUE.get() {
        Some(q) => enqueue(q, line),
        None => {
            if std::io::stderr().write_all(&line).is_err() {
                LOST.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

fn enqueue(q: &SyncSender<Vec<u8>>, line: Vec<u8>) {
    PENDING.fetch_add(1, Ordering::Relaxed);
    match q.try_send(line) {
        Ok(()) => {}
        Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
            PENDING.fetch_sub(1, Ordering::Relaxed);
            LOST.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// The writer thread's queue, started on first use.
fn queue() -> &'static SyncSender<Vec<u8>> {
    QUEUE.get_or_init(|| {
        let (tx, rx) = sync_channel::<Vec<u8>>(QUEUE_LINES);
        let spawned = std::thread::Builder::new()
            .name("vigil-log".into())
            .spawn(move || {
                let mut err = std::io::stderr();
                while let Ok(line) = rx.recv() {
                    if !write_line(&mut err, &line) {
                        LOST.fetch_add(1, Ordering::Relaxed);
                    }
                    PENDING.fetch_sub(1, Ordering::Relaxed);
                }
            });
        if spawned.is_err() {
            // No thread: the receiver is gone and every line counts as lost.
            LOST.fetch_add(1, Ordering::Relaxed);
        }
        tx
    })
}

/// Write one whole line; a standard error that is non-blocking and full is
/// retried for a short while, then the line is given up.
fn write_line(err: &mut std::io::Stderr, line: &[u8]) -> bool {
    let mut rest = line;
    let mut tries = 0;
    while !rest.is_empty() {
        match err.write(rest) {
            Ok(0) => return false,
            Ok(n) => rest = &rest[n..],
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock && tries < 100 => {
                tries += 1;
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(_) => return false,
        }
    }
    true
}

/// A [`tracing_subscriber::fmt::MakeWriter`] that hands each event's line to the
/// writer thread.
#[derive(Clone, Copy, Debug, Default)]
pub struct QueuedStderr;

/// One event's line, sent to the writer thread when dropped.
#[derive(Debug, Default)]
pub struct QueuedLine(Vec<u8>);

impl Write for QueuedLine {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for QueuedLine {
    fn drop(&mut self) {
        if !self.0.is_empty() {
            enqueue(queue(), std::mem::take(&mut self.0));
        }
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for QueuedStderr {
    type Writer = QueuedLine;

    fn make_writer(&'a self) -> QueuedLine {
        QueuedLine(Vec::with_capacity(256))
    }
}

struct MicrosTimer;

impl tracing_subscriber::fmt::time::FormatTime for MicrosTimer {
    fn format_time(&self, w: &mut tracing_subscriber::fmt::format::Writer<'_>) -> std::fmt::Result {
        write!(w, "{}", wall_us())
    }
}

/// Install the global subscriber, writing through the non-blocking queue.
/// `RUST_LOG` overrides the default level (info). Colour only when standard
/// error is a terminal.
pub fn init(format: LogFormat) {
    use std::io::IsTerminal;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(QueuedStderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false);
    let result = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .with_timer(MicrosTimer)
            .try_init(),
    };
    if let Err(e) = result {
        say(&format!("vigil: logging already initialised: {e}"));
    }
}

/// Wait up to `within` for the queued lines to be written (before the process
/// exits).
pub fn flush(within: Duration) {
    let until = std::time::Instant::now() + within;
    while PENDING.load(Ordering::Relaxed) > 0 && std::time::Instant::now() < until {
        std::thread::sleep(Duration::from_millis(2));
    }
}
