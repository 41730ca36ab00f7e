//! The pure part of `vigil bench host`: a histogram of how late a sleeping thread
//! woke up, its summary, and the verdict on the timer profiles. Plain values in and
//! out, no clock, no threads, no I/O: [`super::host`] measures and prints.
//!
//! # The tolerance rule
//!
//! A stall of `S` (the whole daemon not running, as a frozen VM or a starved thread
//! is) costs a profile nothing while `S <= tolerance(timers)`, where
//!
//! ```text
//! tolerance = min(peer_inactive - heartbeat, lease - 2 × heartbeat)
//! ```
//!
//! - `peer_inactive - heartbeat`: the peers last heard this node up to a heartbeat
//!   before the stall began, and declare it gone after `peer_inactive` of silence
//!   (property L2 in `docs/health.md`: shorter stalls never remove a node);
//! - `lease - 2 × heartbeat`: a member's lease runs from the latest of its own send
//!   times a quorum has confirmed, and that send time is up to two heartbeats old
//!   (a confirmation comes up to a heartbeat after the frame it confirms, the
//!   renewals a heartbeat apart; `docs/fencing.md`, the `3 × heartbeat` floor on
//!   `lease` in `src/config.rs`). A longer stall lets the lease lapse while the
//!   node is away: its clients lose authority until the next confirmation, and a
//!   stall longer than the whole `lease` makes it fence itself or rejoin
//!   (`daemon.stall_action`).
//!
//! So the rule is stricter than the "tolerates stalls up to `lease`" of
//! `docs/config.md`, which counts only removal and self-fencing: here a profile is
//! recommended only when the node would stay a member *with authority* throughout.
//! With the shipped profiles that is 300 ms for `default` (100/600/500) and 20 ms for
//! `fast` (10/50/40). `timers.stall_report` plays no part: it only decides which
//! stalls the daemon logs.
//!
//! A profile is judged against the worst stall of every thread measured (a stall
//! that reaches a real-time thread reaches the daemon however it runs). When only
//! the real-time thread's worst fits, the verdict says the profile needs
//! `daemon.realtime`.

use serde::{Deserialize, Serialize};
use std::time::Duration;
use vigil::config::Timers;

/// Buckets below this hold one microsecond each.
const LINEAR: u64 = 16;
/// Sub-buckets per power of two above [`LINEAR`] (3 bits: at most 12.5 % wide).
const SUB_BITS: u32 = 3;
const SUB: u64 = 1 << SUB_BITS;
/// Enough buckets for any `u64` of microseconds.
const BUCKETS: usize = LINEAR as usize + (64 - 4) * SUB as usize;

/// Lateness of wake-ups in microseconds, on log-scale buckets: exact below 16 µs,
/// then eight buckets per power of two (a percentile is at most 12.5 % above the
/// true value, and never above the exact maximum).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Histogram {
    counts: Vec<u64>,
    count: u64,
    max_us: u64,
}

impl Default for Histogram {
    fn default() -> Histogram {
        Histogram::new()
    }
}

/// One non-empty bucket: `count` wake-ups late by at most `le_us` (and more than the
/// previous bucket's bound).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bucket {
    /// The bucket's upper bound, inclusive, in microseconds.
    pub le_us: u64,
    /// How many wake-ups fell in it.
    pub count: u64,
}

fn bucket_of(us: u64) -> usize {
    if us < LINEAR {
        return usize::try_from(us).unwrap_or(0);
    }
    let exp = 63 - us.leading_zeros(); // >= 4
    let sub = (us >> (exp - SUB_BITS)) & (SUB - 1);
    let i = LINEAR + u64::from(exp - 4) * SUB + sub;
    usize::try_from(i).unwrap_or(BUCKETS - 1)
}

/// The largest value bucket `i` holds.
fn upper_of(i: usize) -> u64 {
    let i = i as u64;
    if i < LINEAR {
        return i;
    }
    let exp = (i - LINEAR) / SUB + 4;
    let sub = (i - LINEAR) % SUB;
    let width = 1u64 << (exp - u64::from(SUB_BITS));
    // (1 << exp) + sub × width + width - 1, saturating at the top bucket.
    (1u64 << exp)
        .saturating_add(sub.saturating_mul(width))
        .saturating_add(width - 1)
}

impl Histogram {
    /// An empty histogram.
    pub fn new() -> Histogram {
        Histogram {
            counts: vec![0; BUCKETS],
            count: 0,
            max_us: 0,
        }
    }

    /// Counts one wake-up `late_us` microseconds late.
    pub fn record(&mut self, late_us: u64) {
        self.counts[bucket_of(late_us)] += 1;
        self.count += 1;
        self.max_us = self.max_us.max(late_us);
    }

    /// How many wake-ups were recorded.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// The latest wake-up, exact (0 when empty).
    pub fn max_us(&self) -> u64 {
        self.max_us
    }

    /// The smallest bucket bound at or below which a fraction `q` (0..=1) of the
    /// wake-ups lie, capped by the exact maximum; 0 when empty.
    pub fn quantile_us(&self, q: f64) -> u64 {
        if self.count == 0 {
            return 0;
        }
        let q = q.clamp(0.0, 1.0);
        // The rank of the wanted wake-up, 1-based: ceil(q × count), at least 1.
        #[allow(clippy::cast_precision_loss, clippy::cast_possible_truncation)]
        let rank = ((q * self.count as f64).ceil() as u64).clamp(1, self.count);
        let mut seen = 0;
        for (i, &c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return upper_of(i).min(self.max_us);
            }
        }
        self.max_us
    }

    /// The non-empty buckets, in order.
    pub fn buckets(&self) -> Vec<Bucket> {
        self.counts
            .iter()
            .enumerate()
            .filter(|(_, &c)| c > 0)
            .map(|(i, &c)| Bucket {
                le_us: upper_of(i).min(self.max_us),
                count: c,
            })
            .collect()
    }
}

/// What one measuring thread saw: its scheduling and the summary of its wake-ups.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ThreadStalls {
    /// `"realtime"` or `"normal"`.
    pub thread: String,
    /// The scheduling it ran with: `"fifo 50"`, `"other"`, or
    /// `"other (fifo refused: EPERM ...)"`.
    pub policy: String,
    /// Whether it ran at real-time priority.
    pub realtime: bool,
    /// Why real-time priority was not applied (and how to allow it), if it was
    /// asked for and refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warning: Option<String>,
    /// How many times it woke up.
    pub wakeups: u64,
    /// Median lateness, µs.
    pub p50_us: u64,
    /// 99th percentile of lateness, µs.
    pub p99_us: u64,
    /// 99.9th percentile of lateness, µs.
    pub p999_us: u64,
    /// The worst stall: the latest wake-up, µs (exact).
    pub worst_us: u64,
    /// When the worst stall ended, in seconds after the measurement began.
    pub worst_at_s: f64,
    /// The histogram's non-empty buckets.
    pub buckets: Vec<Bucket>,
}

impl ThreadStalls {
    /// The summary of `hist` for a thread named `thread` that ran with `policy`.
    pub fn summarize(
        thread: &str,
        policy: &str,
        realtime: bool,
        warning: Option<String>,
        hist: &Histogram,
        worst_at: Duration,
    ) -> ThreadStalls {
        ThreadStalls {
            thread: thread.to_string(),
            policy: policy.to_string(),
            realtime,
            warning,
            wakeups: hist.count(),
            p50_us: hist.quantile_us(0.5),
            p99_us: hist.quantile_us(0.99),
            p999_us: hist.quantile_us(0.999),
            worst_us: hist.max_us(),
            worst_at_s: worst_at.as_secs_f64(),
            buckets: hist.buckets(),
        }
    }
}

/// A set of timers to judge, with the name to print (`"default"`, `"fast"`,
/// `"this config"`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamedTimers {
    /// What the verdict calls it.
    pub name: String,
    /// The timers.
    pub timers: Timers,
}

impl NamedTimers {
    /// The shipped profiles, fastest first: `fast`, then `default`, with their
    /// values from [`Timers::profile`].
    pub fn shipped() -> Vec<NamedTimers> {
        use vigil::config::TimerProfile;
        [
            ("fast", TimerProfile::Fast),
            ("default", TimerProfile::Default),
        ]
        .into_iter()
        .map(|(name, p)| NamedTimers {
            name: name.into(),
            timers: Timers::profile(p),
        })
        .collect()
    }
}

/// The longest stall `t` absorbs with the node staying a member with authority:
/// `min(peer_inactive - heartbeat, lease - 2 × heartbeat)` (see the module
/// documentation), zero when the timers leave none.
pub fn tolerance(t: &Timers) -> Duration {
    let removal = t.peer_inactive.saturating_sub(t.heartbeat);
    let lapse = t.lease.saturating_sub(t.heartbeat.saturating_mul(2));
    removal.min(lapse)
}

/// The verdict on one set of timers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProfileVerdict {
    /// The timers' name.
    pub profile: String,
    /// What it tolerates ([`tolerance`]), µs.
    pub tolerates_us: u64,
    /// The worst stall it was judged against, µs.
    pub worst_us: u64,
    /// The worst p99.9 of the threads it was judged against, µs.
    pub p999_us: u64,
    /// `tolerates - worst`, µs; negative when the stall was longer.
    pub margin_us: i64,
    /// `tolerates - p99.9`, µs.
    pub p999_margin_us: i64,
    /// The profile fits this host.
    pub ok: bool,
    /// It fits only as measured by the real-time thread: run the daemon with
    /// `daemon.realtime`.
    pub needs_realtime: bool,
}

/// What `vigil bench host` recommends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Recommendation {
    /// One verdict per set of timers, in the order given.
    pub verdicts: Vec<ProfileVerdict>,
    /// The first set of timers that fits (the fastest, with [`NamedTimers::shipped`]);
    /// `None` when none does.
    pub use_profile: Option<String>,
}

fn us(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

fn signed(a: u64, b: u64) -> i64 {
    let a = i64::try_from(a).unwrap_or(i64::MAX);
    let b = i64::try_from(b).unwrap_or(i64::MAX);
    a.saturating_sub(b)
}

/// Judges each of `profiles` against the stalls `threads` saw, by the rule of the
/// module documentation: a profile fits when the worst stall of every thread is at
/// most its [`tolerance`]; failing that, when the worst of the real-time threads is
/// (then it needs `daemon.realtime`). No threads, or no wake-ups, fit nothing.
pub fn recommend(threads: &[ThreadStalls], profiles: &[NamedTimers]) -> Recommendation {
    let measured: Vec<&ThreadStalls> = threads.iter().filter(|t| t.wakeups > 0).collect();
    let worst = |ts: &[&ThreadStalls]| {
        (
            ts.iter().map(|t| t.worst_us).max(),
            ts.iter().map(|t| t.p999_us).max().unwrap_or(0),
        )
    };
    let (all_worst, all_p999) = worst(&measured);
    let rt: Vec<&ThreadStalls> = measured.iter().copied().filter(|t| t.realtime).collect();
    let (rt_worst, rt_p999) = worst(&rt);
    let verdicts: Vec<ProfileVerdict> = profiles
        .iter()
        .map(|p| {
            let tol = us(tolerance(&p.timers));
            let fits = |w: Option<u64>| w.is_some_and(|w| w <= tol);
            let (ok, needs_realtime, w, p999) = if fits(all_worst) {
                (true, false, all_worst, all_p999)
            } else if fits(rt_worst) {
                (true, true, rt_worst, rt_p999)
            } else {
                (false, false, all_worst, all_p999)
            };
            let w = w.unwrap_or(0);
            ProfileVerdict {
                profile: p.name.clone(),
                tolerates_us: tol,
                worst_us: w,
                p999_us: p999,
                margin_us: signed(tol, w),
                p999_margin_us: signed(tol, p999),
                ok: ok && !measured.is_empty(),
                needs_realtime,
            }
        })
        .collect();
    let use_profile = verdicts.iter().find(|v| v.ok).map(|v| v.profile.clone());
    Recommendation {
        verdicts,
        use_profile,
    }
}

/// Microseconds as milliseconds with one decimal (`-12.5`).
pub fn ms_text(us: i64) -> String {
    let sign = if us < 0 { "-" } else { "" };
    let a = us.unsigned_abs();
    format!("{sign}{}.{}", a / 1000, (a % 1000) / 100)
}

impl ProfileVerdict {
    /// One line: `fast: OK with margin 18.7 ms (p99.9: 19.9 ms)` or
    /// `fast: NOT recommended: a stall of 80.0 ms was seen, the profile tolerates 20.0 ms`.
    pub fn line(&self) -> String {
        let tol = ms_text(signed(self.tolerates_us, 0));
        if self.ok {
            let rt = if self.needs_realtime {
                " only with daemon.realtime = \"fifo\" (the normal thread stalled longer):"
            } else {
                " with"
            };
            format!(
                "{}: OK{rt} margin {} ms (p99.9: {} ms), tolerates {tol} ms",
                self.profile,
                ms_text(self.margin_us),
                ms_text(self.p999_margin_us)
            )
        } else {
            format!(
                "{}: NOT recommended: a stall of {} ms was seen, the profile tolerates {tol} ms",
                self.profile,
                ms_text(signed(self.worst_us, 0))
            )
        }
    }
}

impl Recommendation {
    /// The verdict lines, then which timers to use.
    pub fn text(&self) -> String {
        let mut out = String::new();
        for v in &self.verdicts {
            out.push_str(&v.line());
            out.push('\n');
        }
        match &self.use_profile {
            Some(p) => {
                let rt = self
                    .verdicts
                    .iter()
                    .any(|v| &v.profile == p && v.needs_realtime);
                let rt = if rt {
                    ", with daemon.realtime = \"fifo\""
                } else {
                    ""
                };
                out.push_str(&format!("use: {p}{rt}\n"));
            }
            None => {
                let worst = self.verdicts.iter().map(|v| v.worst_us).max().unwrap_or(0);
                out.push_str(&format!(
                    "use: none of these: this host stalled {} ms; choose timers with \
                     peer_inactive - heartbeat and lease - 2 × heartbeat above that \
                     (docs/config.md), or find what froze the host\n",
                    ms_text(signed(worst, 0))
                ));
            }
        }
        out
    }
}

/// What `vigil config check FILE --host-report REPORT` says about the timers `t` of a
/// config whose daemon runs real-time when `realtime`, given the `threads` of a
/// saved [`super::host::HostReport`]: `Ok(line)` when they tolerate its worst stall,
/// `Err(warning)` when they do not (or only with `daemon.realtime`, which is off).
/// Advice only: the caller warns and still accepts the config.
pub fn check_timers(
    threads: &[ThreadStalls],
    t: &Timers,
    realtime: bool,
) -> Result<String, String> {
    let named = NamedTimers {
        name: "this config".into(),
        timers: t.clone(),
    };
    let r = recommend(threads, &[named]);
    let Some(v) = r.verdicts.first() else {
        return Err("the host report judged nothing".into());
    };
    let tol = ms_text(signed(v.tolerates_us, 0));
    let worst = ms_text(signed(v.worst_us, 0));
    if threads.iter().all(|t| t.wakeups == 0) {
        return Err("the host report has no wake-ups measured".into());
    }
    if !v.ok {
        return Err(format!(
            "the timers tolerate stalls up to {tol} ms (min(peer_inactive - heartbeat, \
             lease - 2 × heartbeat)), but the host report saw a stall of {worst} ms: \
             expect false accusations or lapsed leases on this host"
        ));
    }
    if v.needs_realtime && !realtime {
        let normal = threads
            .iter()
            .filter(|t| !t.realtime)
            .map(|t| t.worst_us)
            .max()
            .unwrap_or(0);
        return Err(format!(
            "the timers tolerate stalls up to {tol} ms, which the host report's real-time \
             thread stayed within but its normal thread did not ({} ms): set \
             daemon.realtime = \"fifo\"",
            ms_text(signed(normal, 0))
        ));
    }
    Ok(format!(
        "the timers tolerate stalls up to {tol} ms; the host report's worst was {worst} ms \
         (margin {} ms)",
        ms_text(v.margin_us)
    ))
}

/// The CPU time the hypervisor stole from this VM, summed over every CPU, in clock
/// ticks (`USER_HZ`): the eighth number of the `cpu` line of `/proc/stat`. `None` when
/// the text has no such line or field (a kernel without steal accounting).
pub fn steal_ticks(proc_stat: &str) -> Option<u64> {
    let line = proc_stat.lines().find(|l| l.starts_with("cpu "))?;
    line.split_whitespace().nth(8)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_exact_below_16_us_and_at_most_an_eighth_wide_above() {
        for v in 0..16 {
            assert_eq!(upper_of(bucket_of(v)), v);
        }
        let mut prev_upper = 15;
        for i in 16..BUCKETS - 1 {
            let up = upper_of(i);
            assert_eq!(
                bucket_of(prev_upper + 1),
                i,
                "bucket {i} starts after {prev_upper}"
            );
            assert_eq!(bucket_of(up), i);
            assert!(
                (up - prev_upper) * 8 <= prev_upper + 1,
                "bucket {i} too wide"
            );
            prev_upper = up;
        }
        assert_eq!(bucket_of(u64::MAX), BUCKETS - 1);
        assert_eq!(upper_of(BUCKETS - 1), u64::MAX);
    }

    #[test]
    fn quantiles_of_a_known_set() {
        let mut h = Histogram::new();
        assert_eq!((h.quantile_us(0.5), h.max_us(), h.count()), (0, 0, 0));
        // 1000 wake-ups: 990 at 3 µs, 9 at 100 µs, one at 80 ms.
        for _ in 0..990 {
            h.record(3);
        }
        for _ in 0..9 {
            h.record(100);
        }
        h.record(80_000);
        assert_eq!(h.count(), 1000);
        let table: [(f64, u64, u64); 6] = [
            // (q, at least, at most)
            (0.0, 3, 3),
            (0.5, 3, 3),
            (0.99, 3, 3),
            (0.995, 100, 112),
            (0.999, 100, 112),
            (1.0, 80_000, 80_000),
        ];
        for (q, lo, hi) in table {
            let v = h.quantile_us(q);
            assert!((lo..=hi).contains(&v), "q {q}: {v} not in {lo}..={hi}");
        }
        assert_eq!(h.max_us(), 80_000);
        let b = h.buckets();
        assert_eq!(b.iter().map(|b| b.count).sum::<u64>(), 1000);
        assert_eq!(b.last().map(|b| b.le_us), Some(80_000));
        assert_eq!(
            b.first(),
            Some(&Bucket {
                le_us: 3,
                count: 990
            })
        );
    }

    #[test]
    fn a_percentile_never_exceeds_the_maximum() {
        let mut h = Histogram::new();
        h.record(1000);
        assert_eq!(h.quantile_us(0.5), 1000);
        h.record(1001);
        assert_eq!(h.quantile_us(1.0), 1001);
    }

    fn thread(name: &str, realtime: bool, p999_us: u64, worst_us: u64) -> ThreadStalls {
        ThreadStalls {
            thread: name.into(),
            policy: if realtime { "fifo 50" } else { "other" }.into(),
            realtime,
            warning: None,
            wakeups: 60_000,
            p50_us: 60,
            p99_us: 200,
            p999_us,
            worst_us,
            worst_at_s: 12.5,
            buckets: Vec::new(),
        }
    }

    #[test]
    fn the_shipped_profiles_tolerate_20_and_300_ms() {
        let shipped = NamedTimers::shipped();
        let names: Vec<&str> = shipped.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["fast", "default"]);
        let tol: Vec<Duration> = shipped.iter().map(|p| tolerance(&p.timers)).collect();
        assert_eq!(tol, [Duration::from_millis(20), Duration::from_millis(300)]);
    }

    #[test]
    fn recommend_by_the_worst_stall() {
        // (what, threads, fast ok, fast needs rt, default ok, use)
        type Case = (
            &'static str,
            Vec<ThreadStalls>,
            bool,
            bool,
            bool,
            Option<&'static str>,
        );
        let cases: Vec<Case> = vec![
            (
                "quiet host",
                vec![
                    thread("realtime", true, 150, 400),
                    thread("normal", false, 900, 2_000),
                ],
                true,
                false,
                true,
                Some("fast"),
            ),
            (
                "80 ms freeze",
                vec![
                    thread("realtime", true, 150, 80_000),
                    thread("normal", false, 900, 80_300),
                ],
                false,
                false,
                true,
                Some("default"),
            ),
            (
                "700 ms freeze",
                vec![
                    thread("realtime", true, 150, 700_000),
                    thread("normal", false, 900, 700_000),
                ],
                false,
                false,
                false,
                None,
            ),
            (
                "busy CPU, real-time thread unharmed",
                vec![
                    thread("realtime", true, 100, 300),
                    thread("normal", false, 9_000, 35_000),
                ],
                true,
                true,
                true,
                Some("fast"),
            ),
            (
                "busy CPU, no real-time thread",
                vec![
                    thread("realtime", false, 9_000, 35_000),
                    thread("normal", false, 9_000, 34_000),
                ],
                false,
                false,
                true,
                Some("default"),
            ),
            (
                "exactly the tolerance fits",
                vec![thread("normal", false, 100, 20_000)],
                true,
                false,
                true,
                Some("fast"),
            ),
            ("nothing measured", vec![], false, false, false, None),
        ];
        for (what, threads, fast_ok, fast_rt, default_ok, use_profile) in cases {
            let r = recommend(&threads, &NamedTimers::shipped());
            let got = (
                r.verdicts[0].ok,
                r.verdicts[0].needs_realtime,
                r.verdicts[1].ok,
                r.use_profile.as_deref(),
            );
            assert_eq!(got, (fast_ok, fast_rt, default_ok, use_profile), "{what}");
        }
    }

    #[test]
    fn the_lines_say_the_margin_or_the_stall_and_the_tolerance() {
        let quiet = recommend(
            &[
                thread("realtime", true, 150, 1_300),
                thread("normal", false, 900, 400),
            ],
            &NamedTimers::shipped(),
        );
        assert_eq!(quiet.verdicts[0].margin_us, 18_700);
        assert_eq!(quiet.verdicts[0].p999_margin_us, 19_100);
        let text = quiet.text();
        assert!(
            text.contains("fast: OK with margin 18.7 ms (p99.9: 19.1 ms), tolerates 20.0 ms"),
            "{text}"
        );
        assert!(text.ends_with("use: fast\n"), "{text}");

        let busy = recommend(
            &[
                thread("realtime", true, 600, 8_300),
                thread("normal", false, 1_300, 75_700),
            ],
            &NamedTimers::shipped(),
        );
        let text = busy.text();
        assert!(
            text.contains(
                "fast: OK only with daemon.realtime = \"fifo\" (the normal thread stalled \
                 longer): margin 11.7 ms (p99.9: 19.4 ms), tolerates 20.0 ms"
            ),
            "{text}"
        );
        assert!(text.contains("default: OK with margin 224.3 ms"), "{text}");
        assert!(
            text.ends_with("use: fast, with daemon.realtime = \"fifo\"\n"),
            "{text}"
        );

        let frozen = recommend(
            &[thread("normal", false, 900, 80_000)],
            &NamedTimers::shipped(),
        );
        let text = frozen.text();
        assert!(
            text.contains(
                "fast: NOT recommended: a stall of 80.0 ms was seen, the profile tolerates 20.0 ms"
            ),
            "{text}"
        );
        assert!(text.contains("default: OK with margin 220.0 ms"), "{text}");
        assert!(text.ends_with("use: default\n"), "{text}");

        let worse = recommend(
            &[thread("normal", false, 900, 700_000)],
            &NamedTimers::shipped(),
        );
        let text = worse.text();
        assert!(
            text.contains("default: NOT recommended: a stall of 700.0 ms"),
            "{text}"
        );
        assert!(
            text.contains("use: none of these: this host stalled 700.0 ms"),
            "{text}"
        );
        assert_eq!(worse.verdicts[1].margin_us, -400_000);
    }

    #[test]
    fn ms_text_rounds_towards_zero() {
        let table = [
            (0, "0.0"),
            (1_999, "1.9"),
            (-12_500, "-12.5"),
            (300_000, "300.0"),
        ];
        for (us, text) in table {
            assert_eq!(ms_text(us), text);
        }
    }

    #[test]
    fn a_config_is_checked_against_a_host_report() {
        let fast = Timers::profile(vigil::config::TimerProfile::Fast);
        let default = Timers::default();
        let quiet = vec![
            thread("realtime", true, 150, 400),
            thread("normal", false, 900, 2_000),
        ];
        let busy = vec![
            thread("realtime", true, 100, 300),
            thread("normal", false, 9_000, 35_000),
        ];
        let frozen = vec![
            thread("realtime", true, 150, 80_000),
            thread("normal", false, 900, 80_000),
        ];
        // (what, threads, timers, realtime, ok, words in the line)
        type Case<'a> = (&'a str, &'a [ThreadStalls], &'a Timers, bool, bool, &'a str);
        let cases: [Case; 6] = [
            (
                "quiet, fast",
                &quiet,
                &fast,
                false,
                true,
                "worst was 2.0 ms (margin 18.0 ms)",
            ),
            (
                "busy, fast, realtime",
                &busy,
                &fast,
                true,
                true,
                "worst was 0.3 ms",
            ),
            (
                "busy, fast, not realtime",
                &busy,
                &fast,
                false,
                false,
                "set daemon.realtime",
            ),
            (
                "busy, default",
                &busy,
                &default,
                false,
                true,
                "margin 265.0 ms",
            ),
            (
                "frozen, fast",
                &frozen,
                &fast,
                true,
                false,
                "a stall of 80.0 ms",
            ),
            (
                "nothing measured",
                &[],
                &default,
                false,
                false,
                "no wake-ups",
            ),
        ];
        for (what, threads, t, rt, ok, words) in cases {
            let got = check_timers(threads, t, rt);
            assert_eq!(got.is_ok(), ok, "{what}: {got:?}");
            let line = got.unwrap_or_else(|e| e);
            assert!(line.contains(words), "{what}: {line}");
        }
    }

    #[test]
    fn steal_is_the_eighth_figure_of_the_cpu_line() {
        let stat = "cpu  4223483 1107364 471678 952431 13359 0 5521 38077 0 0\n\
                    cpu0 1 2 3 4 5 6 7 8 9 10\nintr 5\n";
        assert_eq!(steal_ticks(stat), Some(38077));
        let table = [
            "",
            "cpu  1 2 3 4 5 6 7\n",
            "cpu0 1 2 3 4 5 6 7 8\n",
            "cpu  1 2 3 4 5 6 7 x\n",
        ];
        for t in table {
            assert_eq!(steal_ticks(t), None, "{t:?}");
        }
    }
}
