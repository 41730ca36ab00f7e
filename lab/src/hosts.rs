//! The hosts of a drill: one process per host, run on this machine (loopback) or, for
//! host `i`, inside namespace `i` of a [`Lab`]. [`Hosts`] starts, signals, kills and
//! reaps them, and stops whatever still runs when it is dropped.
//!
//! Hosts are named `n{i}` in messages, as the drills name their nodes.

use crate::netlab::{Lab, ProcId};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A process to start on a host.
#[derive(Clone, Copy, Debug)]
pub struct Start<'a> {
    /// What it is, for messages: `cannot start {what}: …`.
    pub what: &'a str,
    /// Its command line.
    pub argv: &'a [&'a str],
    /// Where its standard error is appended.
    pub log: &'a Path,
    /// On this machine, whether its standard output is appended to `log` too (else it
    /// is discarded). In a namespace both always go to `log` ([`Lab::spawn`]).
    pub stdout_to_log: bool,
}

enum Place {
    Loopback(Vec<Option<Child>>),
    Netns {
        lab: Lab,
        procs: Vec<Option<ProcId>>,
    },
}

/// Where a drill's processes run, at most one per host; dropping it stops them all.
pub struct Hosts {
    place: Place,
}

impl Hosts {
    /// `n` hosts on this machine, nothing running yet.
    pub fn loopback(n: usize) -> Hosts {
        Hosts {
            place: Place::Loopback((0..n).map(|_| None).collect()),
        }
    }

    /// One host per node of `lab`, nothing running yet.
    pub fn netns(lab: Lab) -> Hosts {
        let procs = vec![None; lab.nodes()];
        Hosts {
            place: Place::Netns { lab, procs },
        }
    }

    /// The lab, when the hosts are its namespaces.
    pub fn lab(&self) -> Option<&Lab> {
        match &self.place {
            Place::Netns { lab, .. } => Some(lab),
            Place::Loopback(_) => None,
        }
    }

    /// The lab, when the hosts are its namespaces, to change its links and rules.
    pub fn lab_mut(&mut self) -> Option<&mut Lab> {
        match &mut self.place {
            Place::Netns { lab, .. } => Some(lab),
            Place::Loopback(_) => None,
        }
    }

    /// Start `start` on host `i`, standard input closed, in place of the process it
    /// ran before (which must have been reaped or killed).
    pub fn spawn(&mut self, i: usize, start: &Start) -> Result<(), String> {
        let log = start.log;
        match &mut self.place {
            Place::Loopback(children) => {
                let open = || {
                    std::fs::OpenOptions::new()
                        .create(true)
                        .append(true)
                        .open(log)
                        .map_err(|e| format!("{}: {e}", log.display()))
                };
                let stdout = if start.stdout_to_log {
                    Stdio::from(open()?)
                } else {
                    Stdio::null()
                };
                let (program, args) = start
                    .argv
                    .split_first()
                    .ok_or_else(|| format!("cannot start {}: no command", start.what))?;
                let child = Command::new(program)
                    .args(args)
                    .stdin(Stdio::null())
                    .stdout(stdout)
                    .stderr(open()?)
                    .spawn()
                    .map_err(|e| format!("cannot start {}: {e}", start.what))?;
                children[i] = Some(child);
            }
            Place::Netns { lab, procs } => {
                procs[i] = Some(lab.spawn(i, start.argv, Some(log))?);
            }
        }
        Ok(())
    }

    /// The PID of host `i`'s process, while it has not been reaped.
    pub fn pid(&self, i: usize) -> Option<u32> {
        match &self.place {
            Place::Loopback(children) => children[i].as_ref().map(Child::id),
            Place::Netns { lab, procs } => procs[i].and_then(|p| lab.pid(p).ok()),
        }
    }

    /// Send `sig` (`libc::SIGSTOP`, `SIGCONT`, `SIGKILL`, …) to host `i`'s process.
    pub fn signal(&self, i: usize, sig: i32) -> Result<(), String> {
        let pid = self
            .pid(i)
            .and_then(|p| i32::try_from(p).ok())
            .ok_or_else(|| format!("n{i} is not running"))?;
        // SAFETY: kill(2) has no memory preconditions; the PID is our unreaped child.
        if unsafe { libc::kill(pid, sig) } != 0 {
            return Err(format!(
                "kill(n{i}, {sig}): {}",
                std::io::Error::last_os_error()
            ));
        }
        Ok(())
    }

    /// SIGKILL host `i`'s process and reap it, forgetting its exit code. Fine if
    /// nothing runs there.
    pub fn kill(&mut self, i: usize) -> Result<(), String> {
        match &mut self.place {
            Place::Loopback(children) => {
                if let Some(mut c) = children[i].take() {
                    let _ = c.kill();
                    let _ = c.wait();
                }
                Ok(())
            }
            Place::Netns { lab, procs } => match procs[i].take() {
                Some(p) => lab.kill(p),
                None => Ok(()),
            },
        }
    }

    /// Host `i`'s exit code (-1 when a signal ended it) if its process has exited
    /// since the last call; it is reaped then, and the host runs nothing.
    pub fn try_exit(&mut self, i: usize) -> Option<i32> {
        let status = match &mut self.place {
            Place::Loopback(children) => match children[i].as_mut().map(Child::try_wait) {
                Some(Ok(Some(st))) => {
                    children[i] = None;
                    st
                }
                _ => return None,
            },
            Place::Netns { lab, procs } => match procs[i].map(|p| lab.wait_exit(p, Duration::ZERO))
            {
                Some(Ok(Some(st))) => {
                    procs[i] = None;
                    st
                }
                _ => return None,
            },
        };
        Some(status.code().unwrap_or(-1))
    }

    /// Stop everything: every process killed (a stopped one continued first) and
    /// reaped; in a lab, its namespaces and rules removed too. Also done on drop;
    /// calling it twice is harmless.
    pub fn stop(&mut self) -> Result<(), String> {
        match &mut self.place {
            Place::Loopback(children) => {
                for mut c in children.iter_mut().filter_map(Option::take) {
                    if let Ok(pid) = i32::try_from(c.id()) {
                        // SAFETY: kill(2) has no memory preconditions; the PID is our
                        // unreaped child. A stopped one must be continued to die.
                        unsafe { libc::kill(pid, libc::SIGCONT) };
                    }
                    let _ = c.kill();
                    let _ = c.wait();
                }
                Ok(())
            }
            Place::Netns { lab, procs } => {
                procs.iter_mut().for_each(|p| *p = None);
                lab.cleanup()
            }
        }
    }
}

impl Drop for Hosts {
    fn drop(&mut self) {
        if let Err(e) = self.stop() {
            eprintln!("vigil lab: stopping the hosts: {e}");
        }
    }
}
