//! Real-time scheduling and locked memory for the daemon's node thread, as HA daemons
//! (Corosync, Veritas LLT/GAB) do: a heartbeat sender that waits behind a busy CPU
//! looks like a dead node to its peers.
//!
//! [`apply`] switches the *calling thread* (not the process) to `SCHED_FIFO` or
//! `SCHED_RR` with `SCHED_RESET_ON_FORK`, so threads and processes it spawns later
//! (probe runners, hooks) start again as ordinary `SCHED_OTHER` tasks and cannot
//! starve the machine. It optionally locks all current and future memory
//! (`mlockall(MCL_CURRENT | MCL_FUTURE)`) so that a page fault does not stall the
//! thread behind disk I/O.
//!
//! Nothing here fails hard: what the kernel refuses becomes a warning in the
//! [`RtReport`] that says what failed, why, and how to allow it; the daemon logs it
//! and runs on without.

use std::fmt;
use std::io;
use std::str::FromStr;

/// A real-time scheduling policy (`sched(7)`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RtPolicy {
    /// `SCHED_FIFO`: runs until it blocks or yields, ahead of every `SCHED_OTHER` task.
    Fifo,
    /// `SCHED_RR`: like FIFO, with a time slice among threads of equal priority.
    Rr,
}

impl RtPolicy {
    /// The name used in configs and reports: `"fifo"` or `"rr"`.
    pub fn name(self) -> &'static str {
        match self {
            RtPolicy::Fifo => "fifo",
            RtPolicy::Rr => "rr",
        }
    }

    fn libc_policy(self) -> libc::c_int {
        match self {
            RtPolicy::Fifo => libc::SCHED_FIFO,
            RtPolicy::Rr => libc::SCHED_RR,
        }
    }
}

impl fmt::Display for RtPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for RtPolicy {
    type Err = String;

    /// `"fifo"` or `"rr"` (any case).
    fn from_str(s: &str) -> Result<RtPolicy, String> {
        match s.to_ascii_lowercase().as_str() {
            "fifo" => Ok(RtPolicy::Fifo),
            "rr" => Ok(RtPolicy::Rr),
            _ => Err(format!(
                "unknown real-time policy {s:?}: expected \"fifo\" or \"rr\""
            )),
        }
    }
}

/// What [`apply`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RtReport {
    /// The scheduling of the calling thread afterwards: `"fifo 50"`, `"rr 10"`, `"off"`
    /// (none asked for), or `"off (fifo refused: EPERM ...)"` when it was refused.
    pub policy: String,
    /// All current and future memory of the process is locked.
    pub mlocked: bool,
    /// One line per thing that was asked for and not done: what failed, why, and how
    /// to allow it. Empty when everything asked for was applied.
    pub warnings: Vec<String>,
}

/// The valid real-time priorities on Linux (`sched_get_priority_min/max` for FIFO/RR).
pub const PRIORITIES: std::ops::RangeInclusive<u8> = 1..=99;

/// Applies `policy` at `priority` to the calling thread (with `SCHED_RESET_ON_FORK`),
/// and `mlockall(MCL_CURRENT | MCL_FUTURE)` to the process when `mlock` is set.
/// `priority` is ignored when `policy` is `None`; otherwise it must be in
/// [`PRIORITIES`]. Never panics; every refusal is a warning in the report.
pub fn apply(policy: Option<RtPolicy>, priority: u8, mlock: bool) -> RtReport {
    let mut warnings = Vec::new();
    let policy_text = match policy {
        None => "off".to_string(),
        Some(p) => match set_scheduler(p, priority) {
            Ok(()) => format!("{p} {priority}"),
            Err(e) => {
                warnings.push(e.warning);
                format!("off ({p} refused: {})", e.short)
            }
        },
    };
    let mlocked = mlock
        && match lock_memory() {
            Ok(()) => true,
            Err(w) => {
                warnings.push(w);
                false
            }
        };
    RtReport {
        policy: policy_text,
        mlocked,
        warnings,
    }
}

/// A refusal: a short reason for [`RtReport::policy`] and the full warning.
struct Refusal {
    short: String,
    warning: String,
}

fn set_scheduler(policy: RtPolicy, priority: u8) -> Result<(), Refusal> {
    if !PRIORITIES.contains(&priority) {
        return Err(Refusal {
            short: format!("priority {priority} outside 1..=99"),
            warning: format!(
                "real-time scheduling not applied: {policy} priority {priority} is outside \
                 1..=99 (set rt_priority to a value from 1 to 99; 50 is usual)"
            ),
        });
    }
    let param = libc::sched_param {
        sched_priority: libc::c_int::from(priority),
    };
    // SAFETY: `param` is a valid, initialized sched_param that outlives the call; pid 0
    // is the calling thread.
    let rc = unsafe {
        libc::sched_setscheduler(0, policy.libc_policy() | libc::SCHED_RESET_ON_FORK, &param)
    };
    if rc == 0 {
        return Ok(());
    }
    let err = io::Error::last_os_error();
    let errno = err.raw_os_error().unwrap_or(0);
    let name = errno_name(errno);
    let why = if errno == libc::EPERM {
        let limit = match rtprio_limit() {
            Some(l) => format!("RLIMIT_RTPRIO is {l}"),
            None => "RLIMIT_RTPRIO is unknown".to_string(),
        };
        // SAFETY: geteuid has no preconditions and cannot fail.
        let euid = unsafe { libc::geteuid() };
        let who = if euid == 0 {
            // Root without CAP_SYS_NICE (a container), or a cgroup with no RT budget.
            "running as root, but without CAP_SYS_NICE or in a cgroup with no real-time \
             budget (cpu.rt_runtime_us = 0)"
                .to_string()
        } else {
            format!("running as uid {euid} without CAP_SYS_NICE")
        };
        format!(
            "not permitted: {who}, and {limit} < {priority}; run as root, grant \
             CAP_SYS_NICE (systemd: AmbientCapabilities=CAP_SYS_NICE), or raise the limit \
             (systemd: LimitRTPRIO={priority}; shell: ulimit -r {priority})"
        )
    } else {
        format!("{err}")
    };
    Err(Refusal {
        short: format!("{name}, {}", first_clause(&why)),
        warning: format!(
            "real-time scheduling not applied: sched_setscheduler({} {priority}, \
             SCHED_RESET_ON_FORK) failed with {name}: {why}; the node thread runs as an \
             ordinary SCHED_OTHER thread",
            policy_name_upper(policy)
        ),
    })
}

fn policy_name_upper(p: RtPolicy) -> &'static str {
    match p {
        RtPolicy::Fifo => "SCHED_FIFO",
        RtPolicy::Rr => "SCHED_RR",
    }
}

/// The part of a reason before its first `;`, for the one-line policy text.
fn first_clause(s: &str) -> &str {
    s.split(';').next().unwrap_or(s).trim()
}

fn lock_memory() -> Result<(), String> {
    // SAFETY: mlockall takes flags only and touches no memory of ours.
    let rc = unsafe { libc::mlockall(libc::MCL_CURRENT | libc::MCL_FUTURE) };
    if rc == 0 {
        return Ok(());
    }
    let err = io::Error::last_os_error();
    let errno = err.raw_os_error().unwrap_or(0);
    let limit = match memlock_limit() {
        Some(None) => "unlimited".to_string(),
        Some(Some(bytes)) => format!("{} KiB", bytes / 1024),
        None => "unknown".to_string(),
    };
    let why = match errno {
        libc::EPERM => format!("not permitted: no CAP_IPC_LOCK and RLIMIT_MEMLOCK is {limit}"),
        libc::ENOMEM => {
            format!("the process is larger than RLIMIT_MEMLOCK ({limit}), or memory is short")
        }
        _ => err.to_string(),
    };
    Err(format!(
        "memory not locked: mlockall(MCL_CURRENT | MCL_FUTURE) failed with {}: {why}; run \
         as root, grant CAP_IPC_LOCK (systemd: AmbientCapabilities=CAP_IPC_LOCK), or raise \
         the limit (systemd: LimitMEMLOCK=infinity; shell: ulimit -l unlimited); the daemon \
         runs on with pageable memory",
        errno_name(errno)
    ))
}

/// The soft RLIMIT_RTPRIO, if it can be read (`RLIM_INFINITY` shows as a large number).
fn rtprio_limit() -> Option<u64> {
    soft_limit(libc::RLIMIT_RTPRIO).map(|l| l.unwrap_or(u64::MAX))
}

/// The soft RLIMIT_MEMLOCK in bytes: `Some(None)` is unlimited.
fn memlock_limit() -> Option<Option<u64>> {
    soft_limit(libc::RLIMIT_MEMLOCK)
}

#[cfg(target_env = "gnu")]
type Resource = libc::__rlimit_resource_t;
#[cfg(not(target_env = "gnu"))]
type Resource = libc::c_int;

/// `Some(None)` for unlimited, `Some(Some(n))` for a limit, `None` if unreadable.
fn soft_limit(resource: Resource) -> Option<Option<u64>> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `lim` is a valid rlimit the call writes into.
    let rc = unsafe { libc::getrlimit(resource, &mut lim) };
    if rc != 0 {
        return None;
    }
    if lim.rlim_cur == libc::RLIM_INFINITY {
        Some(None)
    } else {
        Some(Some(lim.rlim_cur))
    }
}

/// The symbolic name of the errnos these calls return, `errno N` for others.
fn errno_name(errno: i32) -> String {
    match errno {
        libc::EPERM => "EPERM".into(),
        libc::EINVAL => "EINVAL".into(),
        libc::ENOMEM => "ENOMEM".into(),
        libc::EAGAIN => "EAGAIN".into(),
        libc::ESRCH => "ESRCH".into(),
        n => format!("errno {n}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The calling thread's policy (without the reset-on-fork flag), the flag, and
    /// the priority.
    fn current() -> (libc::c_int, bool, libc::c_int) {
        // SAFETY: pid 0 is the calling thread; `param` is written by the call.
        let raw = unsafe { libc::sched_getscheduler(0) };
        assert!(
            raw >= 0,
            "sched_getscheduler: {}",
            io::Error::last_os_error()
        );
        let mut param = libc::sched_param { sched_priority: -1 };
        // SAFETY: as above.
        let rc = unsafe { libc::sched_getparam(0, &mut param) };
        assert_eq!(rc, 0, "sched_getparam: {}", io::Error::last_os_error());
        (
            raw & !libc::SCHED_RESET_ON_FORK,
            raw & libc::SCHED_RESET_ON_FORK != 0,
            param.sched_priority,
        )
    }

    fn restore_other() {
        let param = libc::sched_param { sched_priority: 0 };
        // SAFETY: valid param; pid 0 is the calling thread.
        let rc = unsafe { libc::sched_setscheduler(0, libc::SCHED_OTHER, &param) };
        assert_eq!(rc, 0, "restore SCHED_OTHER: {}", io::Error::last_os_error());
    }

    /// Runs `f` on a fresh thread, so whatever it does to its own scheduling ends with
    /// that thread and never leaves the test thread real-time, even on a panic.
    fn on_own_thread<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
        match std::thread::spawn(f).join() {
            Ok(v) => v,
            Err(panic) => std::panic::resume_unwind(panic),
        }
    }

    #[test]
    fn none_is_off_and_changes_nothing() {
        on_own_thread(|| {
            let before = current();
            let r = apply(None, 50, false);
            assert_eq!(r.policy, "off");
            assert!(!r.mlocked);
            assert!(r.warnings.is_empty(), "{:?}", r.warnings);
            assert_eq!(current(), before);
            // The priority is not looked at without a policy.
            assert_eq!(apply(None, 0, false).policy, "off");
        });
    }

    #[test]
    fn a_priority_outside_1_to_99_is_refused_with_a_message() {
        on_own_thread(|| {
            for prio in [0u8, 100, 255] {
                let r = apply(Some(RtPolicy::Fifo), prio, false);
                assert_eq!(
                    r.policy,
                    format!("off (fifo refused: priority {prio} outside 1..=99)")
                );
                assert_eq!(r.warnings.len(), 1);
                assert!(r.warnings[0].contains("1..=99"), "{}", r.warnings[0]);
                assert_eq!(current().0, libc::SCHED_OTHER);
            }
        });
    }

    #[test]
    fn fifo_is_applied_with_reset_on_fork_or_refused_with_how_to_allow_it() {
        on_own_thread(|| {
            // SAFETY: geteuid cannot fail.
            let root = unsafe { libc::geteuid() } == 0;
            let allowed_by_limit = rtprio_limit().is_some_and(|l| l >= 50);
            let r = apply(Some(RtPolicy::Fifo), 50, false);
            if r.warnings.is_empty() {
                assert!(root || allowed_by_limit, "applied without permission?");
                assert_eq!(r.policy, "fifo 50");
                assert_eq!(current(), (libc::SCHED_FIFO, true, 50));
                // A thread spawned now starts as SCHED_OTHER: the reset-on-fork flag.
                let child = std::thread::spawn(current).join().unwrap_or((-1, true, -1));
                assert_eq!(child, (libc::SCHED_OTHER, false, 0));
                restore_other();
                assert_eq!(current(), (libc::SCHED_OTHER, false, 0));
            } else {
                // Refused: as an ordinary user, or as a root without CAP_SYS_NICE.
                assert!(
                    r.policy.starts_with("off (fifo refused: EPERM"),
                    "{}",
                    r.policy
                );
                let w = &r.warnings[0];
                for needle in ["EPERM", "CAP_SYS_NICE", "LimitRTPRIO=50", "run as root"] {
                    assert!(w.contains(needle), "{needle:?} missing from {w}");
                }
                if !root {
                    assert!(
                        !allowed_by_limit,
                        "refused though RLIMIT_RTPRIO allows: {w}"
                    );
                }
                assert_eq!(current().0, libc::SCHED_OTHER);
            }
        });
    }

    /// As root, runs [`refused_when_not_permitted`] in a copy of this test binary as
    /// user `nobody` (uid 65534, no capabilities, RLIMIT_RTPRIO 0 unless raised), so the
    /// refusal path is exercised here too.
    #[test]
    fn as_root_the_refusal_is_also_exercised_as_nobody() {
        use std::os::unix::process::CommandExt;
        // SAFETY: geteuid cannot fail.
        if unsafe { libc::geteuid() } != 0 {
            return; // the refusal path ran in the test above
        }
        let Ok(exe) = std::env::current_exe() else {
            return;
        };
        let out = std::process::Command::new(exe)
            .args([
                "rt::tests::refused_when_not_permitted",
                "--exact",
                "--ignored",
            ])
            .args(["--nocapture", "--test-threads=1"])
            .env(CHILD_ENV, "1")
            .uid(65534)
            .gid(65534)
            .output();
        match out {
            Ok(o) => {
                let text = String::from_utf8_lossy(&o.stdout).into_owned()
                    + &String::from_utf8_lossy(&o.stderr);
                // When nobody cannot even run the binary (a private target directory),
                // there is nothing to check.
                if text.contains("running 1 test") {
                    assert!(o.status.success(), "as nobody:\n{text}");
                    assert!(text.contains("1 passed"), "as nobody:\n{text}");
                } else {
                    eprintln!("skipped: cannot run the test binary as nobody:\n{text}");
                }
            }
            Err(e) => eprintln!("skipped: cannot run the test binary as nobody: {e}"),
        }
    }

    const CHILD_ENV: &str = "VIGIL_RT_TEST_AS_NOBODY";

    /// Run by the test above, as `nobody`.
    #[test]
    #[ignore = "run by as_root_the_refusal_is_also_exercised_as_nobody"]
    fn refused_when_not_permitted() {
        if std::env::var_os(CHILD_ENV).is_none() {
            return;
        }
        // SAFETY: geteuid cannot fail.
        assert_ne!(
            unsafe { libc::geteuid() },
            0,
            "must run as an ordinary user"
        );
        if rtprio_limit().is_some_and(|l| l >= 50) {
            return; // the limit allows it: no refusal to see
        }
        on_own_thread(|| {
            let r = apply(Some(RtPolicy::Fifo), 50, false);
            assert!(
                r.policy
                    .starts_with("off (fifo refused: EPERM, not permitted: running as uid 65534"),
                "{}",
                r.policy
            );
            assert_eq!(r.warnings.len(), 1);
            let w = &r.warnings[0];
            for needle in [
                "EPERM",
                "CAP_SYS_NICE",
                "LimitRTPRIO=50",
                "run as root",
                "RLIMIT_RTPRIO is 0",
            ] {
                assert!(w.contains(needle), "{needle:?} missing from {w}");
            }
            println!("policy: {}\nwarning: {w}", r.policy);
            assert_eq!(current().0, libc::SCHED_OTHER);
        });
        // Locking may fit under RLIMIT_MEMLOCK or not; either way it is reported.
        let r = apply(None, 0, true);
        if r.mlocked {
            // SAFETY: munlockall has no preconditions.
            assert_eq!(unsafe { libc::munlockall() }, 0);
        } else {
            let w = &r.warnings[0];
            assert!(
                w.contains("RLIMIT_MEMLOCK") && w.contains("CAP_IPC_LOCK"),
                "{w}"
            );
            println!("warning: {w}");
        }
    }

    #[test]
    fn rr_reports_its_name() {
        on_own_thread(|| {
            let r = apply(Some(RtPolicy::Rr), 10, false);
            if r.warnings.is_empty() {
                assert_eq!(r.policy, "rr 10");
                assert_eq!(current(), (libc::SCHED_RR, true, 10));
                restore_other();
            } else {
                assert!(r.policy.starts_with("off (rr refused: "), "{}", r.policy);
            }
        });
    }

    #[test]
    fn mlock_is_applied_or_refused_with_how_to_allow_it() {
        let r = apply(None, 0, true);
        assert_eq!(r.policy, "off");
        if r.mlocked {
            assert!(r.warnings.is_empty());
            // Undo it: the test process must not keep all its memory locked.
            // SAFETY: munlockall has no preconditions.
            assert_eq!(unsafe { libc::munlockall() }, 0);
        } else {
            let w = &r.warnings[0];
            assert!(
                w.contains("CAP_IPC_LOCK") && w.contains("LimitMEMLOCK"),
                "{w}"
            );
        }
    }

    #[test]
    fn policy_names_parse_and_print() {
        assert_eq!("fifo".parse::<RtPolicy>(), Ok(RtPolicy::Fifo));
        assert_eq!("RR".parse::<RtPolicy>(), Ok(RtPolicy::Rr));
        assert!("other".parse::<RtPolicy>().is_err());
        assert_eq!(RtPolicy::Fifo.to_string(), "fifo");
    }
}
