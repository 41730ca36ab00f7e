//! Node health: local probes and the node's own stalls, as a sans-IO core.
//!
//! A *probe* is a check of something the node needs to serve (a writable disk, a
//! mount that is not read-only, a command that must succeed, or any check an
//! embedding daemon registers). The core only keeps time and counts: it says when a
//! probe is due ([`HealthOutput::Run`]), the driver runs it outside the heartbeat
//! path and hands the result back with [`Health::handle_result`]. A run that has not
//! answered within the probe's `timeout` counts as a failure (a hung probe is a
//! failed probe) and no second run of it starts while the first is still out.
//! `threshold` failures in a row make the probe *failed*: `HealthOutput::Failed`
//! tells the node to stop being a member, by leaving or by fencing itself.
//!
//! ```
//! use std::time::Duration;
//! use vigil::health::{Health, HealthOutput, OnFailure, ProbeEvent, ProbeSpec};
//! use vigil::types::Instant;
//!
//! let ms = |m: u64| Instant::from_nanos(m * 1_000_000);
//! let mut h = Health::new();
//! let disk = h.add(ms(0), ProbeSpec {
//!     name: "disk".into(),
//!     interval: Duration::from_millis(100),
//!     timeout: Duration::from_millis(50),
//!     threshold: 2,
//!     on_failure: OnFailure::Leave,
//! });
//! h.handle_timeout(ms(0));
//! assert_eq!(h.poll_output(), Some(HealthOutput::Run { probe: disk }));
//! h.handle_result(ms(1), disk, Err("read-only file system".into()));
//! assert!(matches!(h.poll_output(), Some(HealthOutput::Event(ProbeEvent::Failed { failures: 1, .. }))));
//! h.handle_timeout(ms(100));
//! assert_eq!(h.poll_output(), Some(HealthOutput::Run { probe: disk }));
//! // The second run hangs: at its timeout it counts as the second failure.
//! h.handle_timeout(ms(150));
//! assert!(matches!(h.poll_output(), Some(HealthOutput::Event(ProbeEvent::Failed { failures: 2, .. }))));
//! assert!(matches!(h.poll_output(), Some(HealthOutput::Event(ProbeEvent::Unhealthy { probe, .. })) if probe == disk));
//! ```

use serde::{Deserialize, Serialize};
use std::collections::VecDeque;
use std::time::Duration;
use vigil_llt::types::Instant;

/// What a failed probe makes the node do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnFailure {
    /// Leave the cluster gracefully, so the others take over; fence itself if the
    /// leave cannot complete.
    #[default]
    Leave,
    /// Fence itself at once.
    Fence,
}

/// One probe: how often, how long it may take, how many failures in a row fail it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProbeSpec {
    /// For logs and the commands.
    pub name: String,
    /// Time between the starts of two runs.
    pub interval: Duration,
    /// A run that has not answered by then has failed (it may still answer later).
    pub timeout: Duration,
    /// Failures in a row that fail the probe, at least 1.
    pub threshold: u32,
    pub on_failure: OnFailure,
}

/// A probe's handle, in registration order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ProbeId(pub u16);

impl std::fmt::Display for ProbeId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// What the health core asks of its driver, in order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum HealthOutput {
    /// Run this probe now, off the heartbeat path; answer with
    /// [`Health::handle_result`].
    Run { probe: ProbeId },
    /// Something happened to a probe (the node passes it on as it is).
    Event(ProbeEvent),
}

/// What happened to a probe.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ProbeEvent {
    /// A run failed (or hung past its timeout); `failures` in a row so far.
    Failed {
        probe: ProbeId,
        name: String,
        failures: u32,
        reason: String,
    },
    /// A probe that had failed runs passed again.
    Recovered { probe: ProbeId, name: String },
    /// The probe reached its threshold: the node must stop being a member.
    Unhealthy {
        probe: ProbeId,
        name: String,
        action: OnFailure,
        reason: String,
    },
}

/// A probe's state, for `fenceadm -d` and `lltstat -c`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProbeStatus {
    pub id: ProbeId,
    pub spec: ProbeSpec,
    /// `ok`, `failing` (some failures, below the threshold), `failed` or `pending`
    /// (never answered yet).
    pub state: String,
    pub runs: u64,
    pub failures: u64,
    /// Failures in a row.
    pub consecutive: u32,
    /// The last failure's reason.
    pub last_error: Option<String>,
    /// How long the last answered run took.
    pub last_duration: Option<Duration>,
    /// A run is out and has not answered.
    pub running: bool,
}

#[derive(Clone, Debug)]
struct Probe {
    spec: ProbeSpec,
    next_due: Instant,
    /// When the run now out started, and whether its timeout was already counted.
    out: Option<(Instant, bool)>,
    runs: u64,
    failures: u64,
    consecutive: u32,
    answered: bool,
    failed: bool,
    last_error: Option<String>,
    last_duration: Option<Duration>,
}

/// The probes of one node.
#[derive(Clone, Debug, Default)]
pub struct Health {
    probes: Vec<Probe>,
    outputs: VecDeque<HealthOutput>,
    /// Outputs queued beyond [`MAX_OUTPUTS`] (kept, never dropped).
    output_overflows: u64,
}

/// Past this many queued outputs the driver has stopped draining (each probe has at
/// most a few out at a time): every output beyond it is counted and kept, never
/// dropped, since a lost `Failed` would hide an unhealthy node.
const MAX_OUTPUTS: usize = 4096;

impl Health {
    pub fn new() -> Health {
        Health::default()
    }

    /// Register a probe; its first run is due at `now`.
    pub fn add(&mut self, now: Instant, mut spec: ProbeSpec) -> ProbeId {
        spec.threshold = spec.threshold.max(1);
        let id = ProbeId(u16::try_from(self.probes.len()).unwrap_or(u16::MAX));
        self.probes.push(Probe {
            spec,
            next_due: now,
            out: None,
            runs: 0,
            failures: 0,
            consecutive: 0,
            answered: false,
            failed: false,
            last_error: None,
            last_duration: None,
        });
        id
    }

    pub fn is_empty(&self) -> bool {
        self.probes.is_empty()
    }

    /// The probe's name, if it exists.
    pub fn name(&self, probe: ProbeId) -> Option<&str> {
        self.probes
            .get(usize::from(probe.0))
            .map(|p| p.spec.name.as_str())
    }

    /// Whether any probe has failed.
    pub fn failed(&self) -> bool {
        self.probes.iter().any(|p| p.failed)
    }

    fn push(&mut self, o: HealthOutput) {
        if self.outputs.len() >= MAX_OUTPUTS {
            self.output_overflows = self.output_overflows.saturating_add(1);
        }
        self.outputs.push_back(o);
    }

    /// Outputs queued while the queue already held its bound (none dropped).
    pub fn output_overflows(&self) -> u64 {
        self.output_overflows
    }

    pub fn poll_output(&mut self) -> Option<HealthOutput> {
        self.outputs.pop_front()
    }

    /// When a probe is next due, or a run out will time out.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.probes
            .iter()
            .filter(|p| !p.failed)
            .map(|p| match p.out {
                Some((started, false)) => (started + p.spec.timeout).min(p.next_due),
                // A hung run already counted: the next failure is counted at the
                // next due time, if it still hangs.
                _ => p.next_due,
            })
            .min()
    }

    /// Start the probes that are due; count runs out past their timeout as failures.
    pub fn handle_timeout(&mut self, now: Instant) {
        for i in 0..self.probes.len() {
            let p = &mut self.probes[i];
            if p.failed {
                continue;
            }
            if let Some((started, counted)) = p.out {
                if !counted && now >= started + p.spec.timeout {
                    p.out = Some((started, true));
                    let why = format!(
                        "no answer within its timeout of {} ms",
                        p.spec.timeout.as_millis()
                    );
                    self.failure(i, why);
                    continue;
                }
            }
            let p = &mut self.probes[i];
            if now < p.next_due {
                continue;
            }
            while p.next_due <= now {
                p.next_due += p.spec.interval.max(Duration::from_millis(1));
            }
            match p.out {
                // Still hung from an earlier run: every interval it stays out is
                // one more failure, and no second run is started beside it.
                Some((started, true)) => {
                    let why = format!(
                        "still no answer after {} ms",
                        now.saturating_since(started).as_millis()
                    );
                    self.failure(i, why);
                }
                Some((_, false)) => {}
                None => {
                    p.out = Some((now, false));
                    p.runs = p.runs.saturating_add(1);
                    self.push(HealthOutput::Run {
                        probe: ProbeId(i as u16),
                    });
                }
            }
        }
    }

    /// The driver's answer to [`HealthOutput::Run`]: `Err` carries why it failed.
    pub fn handle_result(&mut self, now: Instant, probe: ProbeId, result: Result<(), String>) {
        let i = usize::from(probe.0);
        let Some(p) = self.probes.get_mut(i) else {
            return;
        };
        let Some((started, counted)) = p.out.take() else {
            return;
        };
        p.answered = true;
        p.last_duration = Some(now.saturating_since(started));
        if p.failed {
            return;
        }
        let late = counted || now >= started + p.spec.timeout;
        match result {
            Ok(()) if !late => {
                if p.consecutive > 0 {
                    p.consecutive = 0;
                    let name = p.spec.name.clone();
                    self.push(HealthOutput::Event(ProbeEvent::Recovered { probe, name }));
                }
            }
            // A late success does not undo the timeout already counted.
            Ok(()) if counted => {}
            Ok(()) => {
                let why = format!(
                    "answered after {} ms, past its timeout of {} ms",
                    now.saturating_since(started).as_millis(),
                    p.spec.timeout.as_millis()
                );
                self.failure(i, why);
            }
            Err(why) => {
                if counted {
                    // Its hang was counted already; keep the reason.
                    p.last_error = Some(why);
                } else {
                    self.failure(i, why);
                }
            }
        }
    }

    fn failure(&mut self, i: usize, why: String) {
        let p = &mut self.probes[i];
        p.failures = p.failures.saturating_add(1);
        p.consecutive = p.consecutive.saturating_add(1);
        p.last_error = Some(why.clone());
        let (probe, name, failures) = (ProbeId(i as u16), p.spec.name.clone(), p.consecutive);
        let fail = failures >= p.spec.threshold;
        if fail {
            p.failed = true;
        }
        let action = p.spec.on_failure;
        self.push(HealthOutput::Event(ProbeEvent::Failed {
            probe,
            name: name.clone(),
            failures,
            reason: why.clone(),
        }));
        if fail {
            self.push(HealthOutput::Event(ProbeEvent::Unhealthy {
                probe,
                name,
                action,
                reason: why,
            }));
        }
    }

    /// A side-effect-free snapshot.
    pub fn status(&self) -> Vec<ProbeStatus> {
        self.probes
            .iter()
            .enumerate()
            .map(|(i, p)| ProbeStatus {
                id: ProbeId(i as u16),
                spec: p.spec.clone(),
                state: if p.failed {
                    "failed"
                } else if p.consecutive > 0 {
                    "failing"
                } else if !p.answered {
                    "pending"
                } else {
                    "ok"
                }
                .into(),
                runs: p.runs,
                failures: p.failures,
                consecutive: p.consecutive,
                last_error: p.last_error.clone(),
                last_duration: p.last_duration,
                running: p.out.is_some(),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(m: u64) -> Instant {
        Instant::from_nanos(m * 1_000_000)
    }

    fn spec(threshold: u32) -> ProbeSpec {
        ProbeSpec {
            name: "p".into(),
            interval: Duration::from_millis(100),
            timeout: Duration::from_millis(30),
            threshold,
            on_failure: OnFailure::Leave,
        }
    }

    fn drain(h: &mut Health) -> Vec<HealthOutput> {
        std::iter::from_fn(|| h.poll_output()).collect()
    }

    /// A driver that stops draining loses nothing: past its bound the queue keeps
    /// every output and counts the overflow.
    #[test]
    fn an_undrained_output_queue_drops_nothing_and_counts_the_overflow() {
        let mut h = Health::new();
        let probes: Vec<ProbeId> = (0..MAX_OUTPUTS + 10)
            .map(|_| h.add(ms(0), spec(2)))
            .collect();
        h.handle_timeout(ms(0));
        // Every probe fails, each `Failed` queued after all the runs.
        for p in &probes {
            h.handle_result(ms(1), *p, Err("ro".into()));
        }
        assert_eq!(
            h.output_overflows(),
            (2 * probes.len() - MAX_OUTPUTS) as u64
        );
        let out = drain(&mut h);
        assert_eq!(out.len(), 2 * probes.len());
        for (k, p) in probes.iter().enumerate() {
            assert_eq!(out[k], HealthOutput::Run { probe: *p });
            assert!(matches!(
                &out[probes.len() + k],
                HealthOutput::Event(ProbeEvent::Failed { probe, .. }) if probe == p
            ));
        }
    }

    #[test]
    fn runs_at_each_interval_and_passes() {
        let mut h = Health::new();
        let p = h.add(ms(0), spec(2));
        for k in 0..5 {
            assert_eq!(h.poll_timeout(), Some(ms(k * 100)));
            h.handle_timeout(ms(k * 100));
            assert_eq!(drain(&mut h), vec![HealthOutput::Run { probe: p }]);
            h.handle_result(ms(k * 100 + 5), p, Ok(()));
            assert!(drain(&mut h).is_empty());
        }
        let s = &h.status()[0];
        assert_eq!((s.state.as_str(), s.runs, s.failures), ("ok", 5, 0));
    }

    #[test]
    fn failures_in_a_row_reach_the_threshold_and_a_pass_resets_the_count() {
        let mut h = Health::new();
        let p = h.add(ms(0), spec(3));
        let mut t = 0;
        let mut run = |h: &mut Health, ok: bool| {
            h.handle_timeout(ms(t));
            assert_eq!(drain(h), vec![HealthOutput::Run { probe: p }]);
            h.handle_result(ms(t + 1), p, if ok { Ok(()) } else { Err("ro".into()) });
            t += 100;
            drain(h)
        };
        assert!(matches!(
            run(&mut h, false)[..],
            [HealthOutput::Event(ProbeEvent::Failed { failures: 1, .. })]
        ));
        assert!(matches!(
            run(&mut h, false)[..],
            [HealthOutput::Event(ProbeEvent::Failed { failures: 2, .. })]
        ));
        assert!(matches!(
            run(&mut h, true)[..],
            [HealthOutput::Event(ProbeEvent::Recovered { .. })]
        ));
        assert!(matches!(
            run(&mut h, false)[..],
            [HealthOutput::Event(ProbeEvent::Failed { failures: 1, .. })]
        ));
        assert!(matches!(
            run(&mut h, false)[..],
            [HealthOutput::Event(ProbeEvent::Failed { failures: 2, .. })]
        ));
        let out = run(&mut h, false);
        assert!(matches!(
            &out[..],
            [
                HealthOutput::Event(ProbeEvent::Failed { failures: 3, .. }),
                HealthOutput::Event(ProbeEvent::Unhealthy {
                    action: OnFailure::Leave,
                    ..
                })
            ]
        ));
        assert!(h.failed());
        assert_eq!(h.status()[0].state, "failed");
        // A failed probe is not run again.
        assert_eq!(h.poll_timeout(), None);
    }

    #[test]
    fn a_hung_run_fails_at_its_timeout_and_again_every_interval() {
        let mut h = Health::new();
        let p = h.add(ms(0), spec(3));
        h.handle_timeout(ms(0));
        assert_eq!(drain(&mut h), vec![HealthOutput::Run { probe: p }]);
        assert_eq!(h.poll_timeout(), Some(ms(30)));
        h.handle_timeout(ms(30));
        assert!(matches!(
            drain(&mut h)[..],
            [HealthOutput::Event(ProbeEvent::Failed { failures: 1, .. })]
        ));
        // No second run beside the hung one; its hang counts again.
        h.handle_timeout(ms(100));
        assert!(matches!(
            drain(&mut h)[..],
            [HealthOutput::Event(ProbeEvent::Failed { failures: 2, .. })]
        ));
        h.handle_timeout(ms(200));
        let out = drain(&mut h);
        assert!(
            matches!(
                out.last(),
                Some(HealthOutput::Event(ProbeEvent::Unhealthy { .. }))
            ),
            "{out:?}"
        );
        // The late answer changes nothing.
        h.handle_result(ms(250), p, Ok(()));
        assert!(drain(&mut h).is_empty());
        assert!(h.failed());
    }

    #[test]
    fn a_late_success_is_a_failure() {
        let mut h = Health::new();
        let p = h.add(ms(0), spec(1));
        h.handle_timeout(ms(0));
        drain(&mut h);
        // Answered past the timeout before the timer fired.
        h.handle_result(ms(40), p, Ok(()));
        assert!(matches!(
            drain(&mut h)[..],
            [
                HealthOutput::Event(ProbeEvent::Failed { .. }),
                HealthOutput::Event(ProbeEvent::Unhealthy { .. })
            ]
        ));
    }

    #[test]
    fn results_for_unknown_or_idle_probes_are_ignored() {
        let mut h = Health::new();
        let p = h.add(ms(0), spec(1));
        h.handle_result(ms(1), p, Err("x".into()));
        h.handle_result(ms(1), ProbeId(9), Err("x".into()));
        assert!(drain(&mut h).is_empty());
        assert!(!h.failed());
    }
}
