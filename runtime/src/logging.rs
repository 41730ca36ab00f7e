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

/// The text format: one line per event, its stable name first, then its fields
/// and the message, for a terminal or the journal:
///
/// ```text
/// view.installed ts_us=1796180674400543 generation=3 members=[0,1,2]: view 3 installed: members [0,1,2]
/// ```
///
/// A level other than info follows the name (`level=warn`). When standard error
/// is the journal (`$JOURNAL_STREAM` names it), each line starts with its syslog
/// priority (`<4>`), which journald takes as the entry's priority and strips.
/// Never coloured; newlines in values are escaped, so an event is one line.
#[derive(Debug)]
pub struct TextLine {
    journal: bool,
}

impl TextLine {
    /// The text format, with priority prefixes when standard error is the journal.
    pub fn new() -> TextLine {
        TextLine {
            journal: stderr_is_journal(),
        }
    }
}

impl Default for TextLine {
    fn default() -> TextLine {
        TextLine::new()
    }
}

/// Whether standard error is the journal's stream: `$JOURNAL_STREAM` is
/// `<device>:<inode>` of it (inherited by children whose standard error went
/// elsewhere, hence the comparison).
fn stderr_is_journal() -> bool {
    use std::os::unix::fs::MetadataExt;
    let Ok(stream) = std::env::var("JOURNAL_STREAM") else {
        return false;
    };
    let Ok(meta) = std::fs::metadata("/proc/self/fd/2") else {
        return false;
    };
    stream == format!("{}:{}", meta.dev(), meta.ino())
}

/// An event's fields in the order given, the name and message apart.
#[derive(Default)]
struct LineFields {
    event: Option<String>,
    message: String,
    rest: String,
}

impl LineFields {
    fn push(&mut self, name: &str, value: &str) {
        match name {
            "event" => self.event = Some(value.to_string()),
            "message" => self.message = one_line(value),
            _ => {
                use std::fmt::Write as _;
                let value = if value.is_empty() || value.contains([' ', '"', '=']) {
                    format!("{value:?}")
                } else {
                    one_line(value)
                };
                let _ = write!(self.rest, " {name}={value}");
            }
        }
    }
}

fn one_line(s: &str) -> String {
    if s.contains(['\n', '\r']) {
        s.replace('\n', "\\n").replace('\r', "\\r")
    } else {
        s.to_string()
    }
}

impl tracing::field::Visit for LineFields {
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        self.push(field.name(), value);
    }

    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        self.push(field.name(), &format!("{value:?}"));
    }
}

impl<S, N> tracing_subscriber::fmt::FormatEvent<S, N> for TextLine
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    N: for<'a> tracing_subscriber::fmt::FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _ctx: &tracing_subscriber::fmt::FmtContext<'_, S, N>,
        mut w: tracing_subscriber::fmt::format::Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> std::fmt::Result {
        use tracing::Level;
        let mut f = LineFields::default();
        event.record(&mut f);
        let level = *event.metadata().level();
        if self.journal {
            let priority = match level {
                Level::ERROR => 3,
                Level::WARN => 4,
                Level::INFO => 6,
                Level::DEBUG | Level::TRACE => 7,
            };
            write!(w, "<{priority}>")?;
        }
        match &f.event {
            Some(name) => w.write_str(name)?,
            None => w.write_str(event.metadata().target())?,
        }
        if level != Level::INFO {
            write!(w, " level={}", level.as_str().to_ascii_lowercase())?;
        }
        w.write_str(&f.rest)?;
        if !f.message.is_empty() {
            write!(w, ": {}", f.message)?;
        }
        writeln!(w)
    }
}

/// Install the global subscriber, writing through the non-blocking queue.
/// `RUST_LOG` overrides the default level (info). Text is one line per event
/// ([`TextLine`]), never coloured; JSON is one object per line.
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
        LogFormat::Text => builder.event_format(TextLine::new()).try_init(),
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Capture(Arc<Mutex<Vec<u8>>>);

    impl Write for Capture {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn text(journal: bool, log: impl FnOnce()) -> String {
        let out = Capture::default();
        let writer = out.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .event_format(TextLine { journal })
            .finish();
        tracing::subscriber::with_default(subscriber, log);
        let bytes = out.0.lock().unwrap().clone();
        String::from_utf8(bytes).unwrap()
    }

    #[test]
    fn text_lines_start_with_the_event_name() {
        let line = text(
            false,
            || tracing::info!(event = "view.installed", generation = 3, members = %"[0,1,2]", "installed view {}", 3),
        );
        assert_eq!(
            line,
            "view.installed generation=3 members=[0,1,2]: installed view 3\n"
        );
        let line = text(false, || {
            tracing::warn!(
                event = "node.leaving",
                why = "two words",
                "line one\nline two"
            )
        });
        assert_eq!(
            line,
            "node.leaving level=warn why=\"two words\": line one\\nline two\n"
        );
        let line = text(true, || tracing::error!(event = "daemon.failed", "no"));
        assert_eq!(line, "<3>daemon.failed level=error: no\n");
    }
}
