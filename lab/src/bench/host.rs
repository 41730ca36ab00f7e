//! `vigil bench host`: how long this host stops running its threads, and which timer
//! profile it can carry.
//!
//! Two threads run at once for `--seconds`: one at real-time priority (`SCHED_FIFO`
//! 50, applied by [`vigil_runtime::rt::apply`] as the daemon applies
//! `daemon.realtime`; when the kernel refuses, it says why and measures that thread
//! as an ordinary one), one ordinary (`SCHED_OTHER`). Each sleeps to absolute
//! deadlines [`INTERVAL`] apart on `CLOCK_MONOTONIC` (`clock_nanosleep` with
//! `TIMER_ABSTIME`) and records how late every wake-up was; after a wake-up later
//! than a whole interval the next deadline is counted from the wake-up, so one stall
//! is one late wake-up, not a train of catch-up ones. The figures and the verdict on
//! the shipped profiles come from [`super::stalls`], which is pure; this module only
//! measures and prints. Nothing is judged in the exit code: 0 when measured, 1 when
//! the measurement could not run (or was interrupted).

use super::common::{self, catch_signals, stopped};
use super::stalls::{recommend, steal_ticks, Histogram, NamedTimers, Recommendation, ThreadStalls};
use crate::Exit;
use clap::Args;
use serde::{Deserialize, Serialize};
use std::fmt::Write as _;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use vigil_runtime::rt::{self, RtPolicy};

/// How long each measuring thread sleeps between wake-ups.
pub const INTERVAL: Duration = Duration::from_millis(1);
/// The real-time priority of the real-time thread (the usual `daemon.rt_priority`).
pub const RT_PRIORITY: u8 = 50;

/// The options of `vigil bench host`.
#[derive(Args, Debug)]
pub struct HostArgs {
    /// How long to measure, in seconds (1..=3600); run it at a busy time.
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub seconds: u64,
    /// Print the report as one JSON object.
    #[arg(long)]
    pub json: bool,
}

/// What `vigil bench host --json` prints (and `vigil config check --host-report`
/// reads).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HostReport {
    /// How long was asked for, in seconds.
    pub seconds: u64,
    /// How long the threads measured, in seconds (less when interrupted).
    pub measured_s: f64,
    /// The intended sleep of each wake-up, µs.
    pub interval_us: u64,
    /// The cores this process may run on.
    pub cores: usize,
    /// When the measurement began, seconds since the Unix epoch (to find a stall's
    /// time of day: add `worst_at_s`).
    pub started_unix_s: u64,
    /// CPU time the hypervisor stole from this VM during the measurement, summed
    /// over every CPU, ms (`/proc/stat`); `None` where the kernel does not count it.
    #[serde(default)]
    pub steal_ms: Option<u64>,
    /// One entry per measuring thread: the real-time one first.
    pub threads: Vec<ThreadStalls>,
    /// The verdict on the shipped profiles.
    pub recommendation: Recommendation,
}

/// `vigil bench host`: measure, print the table (or `--json`) and the verdicts.
/// [`Exit::Ok`] when it measured, whatever the figures; [`Exit::Failure`] when a
/// measuring thread could not run or a stop signal cut it short.
pub fn run(args: HostArgs) -> Exit {
    catch_signals();
    let cores = common::cores();
    if !args.json {
        println!(
            "vigil bench host: two threads (one real-time, one normal) each waking every {} µs \
             for {} s on {cores} cores",
            INTERVAL.as_micros(),
            args.seconds
        );
    }
    let started_unix_s = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let steal0 = steal_ms_now();
    let t0 = Instant::now();
    let until = t0 + Duration::from_secs(args.seconds);
    let spawn = |name: &'static str, rt: bool| {
        std::thread::Builder::new()
            .name(format!("host-{name}"))
            .spawn(move || measure(name, rt, t0, until))
    };
    let handles = [spawn("realtime", true), spawn("normal", false)];
    let mut threads = Vec::new();
    let mut failed = false;
    for h in handles {
        match h.map_err(|e| format!("cannot start a measuring thread: {e}")) {
            Ok(h) => match h.join() {
                Ok(Ok(t)) => threads.push(t),
                Ok(Err(e)) => {
                    eprintln!("vigil bench host: {e}");
                    failed = true;
                }
                Err(_) => {
                    eprintln!("vigil bench host: a measuring thread panicked");
                    failed = true;
                }
            },
            Err(e) => {
                eprintln!("vigil bench host: {e}");
                failed = true;
            }
        }
    }
    let steal_ms = steal0.zip(steal_ms_now()).map(|(a, b)| b.saturating_sub(a));
    let recommendation = recommend(&threads, &NamedTimers::shipped());
    let report = HostReport {
        seconds: args.seconds,
        measured_s: t0.elapsed().min(until - t0).as_secs_f64(),
        interval_us: u64::try_from(INTERVAL.as_micros()).unwrap_or(u64::MAX),
        cores,
        started_unix_s,
        steal_ms,
        threads,
        recommendation,
    };
    if args.json {
        match serde_json::to_string(&report) {
            Ok(s) => println!("{s}"),
            Err(e) => {
                eprintln!("vigil bench host: cannot write the report as JSON: {e}");
                return Exit::Failure;
            }
        }
    } else {
        println!();
        print!("{}", text(&report));
    }
    if stopped() {
        eprintln!("vigil bench host: interrupted; the figures cover the time measured");
        return Exit::Failure;
    }
    if failed || report.threads.iter().all(|t| t.wakeups == 0) {
        return Exit::Failure;
    }
    Exit::Ok
}

/// The table, the real-time warnings, then the verdict lines.
pub fn text(r: &HostReport) -> String {
    let mut out = format!(
        "{:<9} {:<24} {:>9} {:>8} {:>8} {:>9} {:>9} {:>9}\n",
        "thread", "policy", "wake-ups", "p50 µs", "p99 µs", "p99.9 µs", "worst µs", "worst at"
    );
    for t in &r.threads {
        // The reason for a refusal is in the note below the table.
        let policy = if t.warning.is_some() {
            "other (fifo refused)"
        } else {
            &t.policy
        };
        let _ = writeln!(
            out,
            "{:<9} {:<24} {:>9} {:>8} {:>8} {:>9} {:>9} {:>8.1}s",
            t.thread,
            common::one_line(policy, 24),
            t.wakeups,
            t.p50_us,
            t.p99_us,
            t.p999_us,
            t.worst_us,
            t.worst_at_s
        );
    }
    for t in &r.threads {
        if let Some(w) = &t.warning {
            let _ = writeln!(
                out,
                "note: the {} thread ran as a normal one: {w}",
                t.thread
            );
        }
    }
    let _ = writeln!(
        out,
        "\nmeasured {:.1} s; lateness of each {} µs sleep; \"worst at\" is seconds after the start",
        r.measured_s, r.interval_us
    );
    if let Some(steal) = r.steal_ms {
        // The share of the CPU time of every core that the hypervisor took.
        #[allow(clippy::cast_precision_loss)]
        let share = 100.0 * steal as f64 / (1000.0 * r.measured_s * r.cores.max(1) as f64);
        let _ = writeln!(
            out,
            "hypervisor steal: {steal} ms of CPU time over {} cores ({share:.1} %)",
            r.cores
        );
    }
    out.push('\n');
    out.push_str(&r.recommendation.text());
    out
}

/// The CPU time stolen by the hypervisor so far, ms; `None` where it is not counted.
fn steal_ms_now() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/stat").ok()?;
    let ticks = steal_ticks(&text)?;
    // SAFETY: sysconf has no preconditions.
    let hz = u64::try_from(unsafe { libc::sysconf(libc::_SC_CLK_TCK) })
        .ok()
        .filter(|&hz| hz > 0)?;
    Some(ticks.saturating_mul(1000) / hz)
}

/// One thread's measurement: real-time first if `rt`, then sleep to absolute deadlines
/// until `until` (or a stop signal), recording lateness.
fn measure(name: &str, rt: bool, t0: Instant, until: Instant) -> Result<ThreadStalls, String> {
    let (policy, realtime, warning) = if rt {
        let report = rt::apply(Some(RtPolicy::Fifo), RT_PRIORITY, false);
        if report.warnings.is_empty() {
            (report.policy, true, None)
        } else {
            (
                report.policy.replacen("off", "other", 1),
                false,
                Some(report.warnings.join("; ")),
            )
        }
    } else {
        ("other".to_string(), false, None)
    };
    let mut hist = Histogram::new();
    let mut worst_at = Duration::ZERO;
    let interval = INTERVAL;
    let mut deadline = Instant::now() + interval;
    while deadline < until && !stopped() {
        sleep_until(deadline)?;
        let woke = Instant::now();
        let late = woke.saturating_duration_since(deadline);
        let late_us = u64::try_from(late.as_micros()).unwrap_or(u64::MAX);
        if late_us > hist.max_us() || hist.count() == 0 {
            worst_at = woke.saturating_duration_since(t0);
        }
        hist.record(late_us);
        // A stall is one late wake-up: the next deadline counts from now after one.
        deadline = if late > interval {
            woke + interval
        } else {
            deadline + interval
        };
    }
    Ok(ThreadStalls::summarize(
        name, &policy, realtime, warning, &hist, worst_at,
    ))
}

/// Sleeps until `deadline` on `CLOCK_MONOTONIC` (the clock of [`Instant`] on Linux),
/// with `clock_nanosleep(TIMER_ABSTIME)` so that no time is lost between reading the
/// clock and going to sleep.
fn sleep_until(deadline: Instant) -> Result<(), String> {
    // The absolute time of `deadline` on CLOCK_MONOTONIC: now's reading plus the
    // distance to it (Instant keeps its timespec private).
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    let at = Instant::now();
    // SAFETY: `now` is a valid timespec to write to.
    if unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now) } != 0 {
        return Err(format!(
            "clock_gettime(CLOCK_MONOTONIC): {}",
            std::io::Error::last_os_error()
        ));
    }
    let ahead = deadline.saturating_duration_since(at);
    let nanos = i128::from(now.tv_sec) * 1_000_000_000
        + i128::from(now.tv_nsec)
        + i128::try_from(ahead.as_nanos()).unwrap_or(i128::MAX / 2);
    let target = libc::timespec {
        tv_sec: libc::time_t::try_from(nanos / 1_000_000_000).unwrap_or(libc::time_t::MAX),
        tv_nsec: libc::c_long::try_from(nanos % 1_000_000_000).unwrap_or(0),
    };
    loop {
        // SAFETY: `target` is a valid timespec; the remainder pointer may be null with
        // TIMER_ABSTIME.
        let rc = unsafe {
            libc::clock_nanosleep(
                libc::CLOCK_MONOTONIC,
                libc::TIMER_ABSTIME,
                &target,
                std::ptr::null_mut(),
            )
        };
        match rc {
            0 => return Ok(()),
            libc::EINTR if !stopped() => continue,
            libc::EINTR => return Ok(()),
            e => {
                return Err(format!(
                    "clock_nanosleep(CLOCK_MONOTONIC): {}",
                    std::io::Error::from_raw_os_error(e)
                ))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::stalls::NamedTimers;
    use super::*;

    #[test]
    fn the_text_has_a_row_per_thread_the_notes_and_the_verdicts() {
        let mut h = Histogram::new();
        for v in [5, 7, 80_000] {
            h.record(v);
        }
        let threads = vec![
            ThreadStalls::summarize(
                "realtime",
                "other (fifo refused: EPERM)",
                false,
                Some("real-time scheduling not applied: EPERM".into()),
                &h,
                Duration::from_millis(12_300),
            ),
            ThreadStalls::summarize("normal", "other", false, None, &h, Duration::ZERO),
        ];
        let recommendation = recommend(&threads, &NamedTimers::shipped());
        let r = HostReport {
            seconds: 1,
            measured_s: 1.0,
            interval_us: 1000,
            cores: 2,
            started_unix_s: 0,
            steal_ms: Some(150),
            threads,
            recommendation,
        };
        let t = text(&r);
        assert!(t.contains("realtime  other (fifo refused)     "), "{t}");
        assert!(t.contains("80000") && t.contains("12.3s"), "{t}");
        assert!(
            t.contains("hypervisor steal: 150 ms of CPU time over 2 cores (7.5 %)"),
            "{t}"
        );
        assert!(
            t.contains("note: the realtime thread ran as a normal one"),
            "{t}"
        );
        assert!(
            t.contains("fast: NOT recommended") && t.contains("use: default"),
            "{t}"
        );
        // The JSON reads back as it was written.
        let json = serde_json::to_string(&r).expect("json");
        let back: HostReport = serde_json::from_str(&json).expect("read back");
        assert_eq!(back, r);
    }

    #[test]
    fn sleep_until_a_past_deadline_returns_at_once() {
        let t = Instant::now();
        sleep_until(t).expect("sleep");
        sleep_until(Instant::now() + Duration::from_millis(2)).expect("sleep");
        assert!(t.elapsed() >= Duration::from_millis(2));
    }
}
