//! Per-role figures of the failover benchmarks, as pure functions over plain values:
//! samples in, rows of percentiles and ratios out, and the tables that print them.
//!
//! A vigil repetition gives three times after the fault ([`RoleTimes`]): the new
//! membership installed on the last survivor, the last survivor holding authority
//! (its clients may act), and the last node outside the new view fenced (or left).
//! A Corosync repetition gives one: the last survivor's new membership (its
//! votequorum `Members[n]` line). Corosync has no lease and no fence, so those
//! columns show "-" for it.

use crate::drill::RoleTimes;
use std::fmt::Write as _;

/// Which system a row measures.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum System {
    /// vigil daemons in namespaces (`vigil drill --netns`).
    Vigil,
    /// Corosync 3 in namespaces (`vigil bench corosync`).
    Corosync,
}

impl System {
    /// `vigil` or `Corosync`.
    pub fn name(self) -> &'static str {
        match self {
            System::Vigil => "vigil",
            System::Corosync => "Corosync",
        }
    }
}

/// p50 and p99 of one role, ms (nearest rank).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Pcts {
    /// Median.
    pub p50: f64,
    /// 99th percentile (with fewer than 100 samples: the largest).
    pub p99: f64,
}

/// One row of a per-role table: one system and setting, one drill, one size.
#[derive(Clone, Debug, PartialEq)]
pub struct RoleRow {
    /// The system measured.
    pub system: System,
    /// `default profile`, `fast profile`, or a Corosync setting's label.
    pub setting: String,
    /// The drill's name (`kill`, `isolate`, `split`).
    pub drill: String,
    /// Cluster size.
    pub nodes: usize,
    /// Corosync's effective token at this size (ms); `None` for vigil.
    pub effective_token_ms: Option<u64>,
    /// Repetitions that gave a figure.
    pub reps: usize,
    /// Repetitions that failed (their drill did not pass).
    pub failed: usize,
    /// Fault → the last survivor installed the new membership.
    pub membership: Option<Pcts>,
    /// Fault → the last survivor holds authority on the new view (vigil only).
    pub may_act: Option<Pcts>,
    /// Fault → the last node outside the new view fenced itself or left (vigil
    /// drills with such a node only).
    pub loser_out: Option<Pcts>,
    /// Why the row has no figures, when it could not be measured.
    pub note: Option<String>,
}

/// The nearest-rank `p`th percentile (`p` in 1..=100) of `values`: the value at
/// rank ⌈p·n/100⌉ of the sorted values; `None` when there are none.
pub fn percentile_ms(values: &[f64], p: u32) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    let rank = (p as usize * n).div_ceil(100).clamp(1, n);
    Some(v[rank - 1])
}

/// p50 and p99 of `values`, `None` when there are none.
pub fn pcts(values: &[f64]) -> Option<Pcts> {
    Some(Pcts {
        p50: percentile_ms(values, 50)?,
        p99: percentile_ms(values, 99)?,
    })
}

/// The row of vigil's repetitions of one drill at one size: each role's
/// percentiles over the repetitions that have that role's time.
pub fn vigil_row(
    setting: &str,
    drill: &str,
    nodes: usize,
    samples: &[RoleTimes],
    failed: usize,
) -> RoleRow {
    let role = |f: fn(&RoleTimes) -> Option<f64>| -> Option<Pcts> {
        let v: Vec<f64> = samples.iter().filter_map(f).collect();
        pcts(&v)
    };
    RoleRow {
        system: System::Vigil,
        setting: setting.to_string(),
        drill: drill.to_string(),
        nodes,
        effective_token_ms: None,
        reps: samples.len(),
        failed,
        membership: role(|r| r.membership),
        may_act: role(|r| r.may_act),
        loser_out: role(|r| r.loser_out),
        note: None,
    }
}

/// The row of Corosync's repetitions of one drill at one size: the new membership
/// only (fault → the last survivor's `Members[n]` line), or, with `error`, a row
/// that says why it could not be measured.
pub fn corosync_row(
    setting: &str,
    drill: &str,
    nodes: usize,
    effective_token_ms: u64,
    membership_ms: &[f64],
    error: Option<&str>,
) -> RoleRow {
    RoleRow {
        system: System::Corosync,
        setting: setting.to_string(),
        drill: drill.to_string(),
        nodes,
        effective_token_ms: Some(effective_token_ms),
        reps: membership_ms.len(),
        failed: usize::from(error.is_some()),
        membership: pcts(membership_ms),
        may_act: None,
        loser_out: None,
        note: error.map(str::to_string),
    }
}

/// Corosync's membership p50 divided by vigil's, for one vigil row and one Corosync
/// row of the same drill and size.
#[derive(Clone, Debug, PartialEq)]
pub struct Ratio {
    /// Cluster size.
    pub nodes: usize,
    /// The drill.
    pub drill: String,
    /// The vigil row's setting.
    pub vigil: String,
    /// The Corosync row's setting.
    pub corosync: String,
    /// Corosync membership p50 ÷ vigil membership p50.
    pub to_membership: Option<f64>,
    /// Corosync membership p50 ÷ vigil survivors-may-act p50.
    pub to_may_act: Option<f64>,
}

/// Every (vigil row, Corosync row) pair of the same size and drill, in the rows'
/// order (vigil rows outer): how many times longer Corosync took to its new
/// membership than vigil to its own, and than vigil's survivors to authority.
pub fn ratios(rows: &[RoleRow]) -> Vec<Ratio> {
    let div = |a: Option<Pcts>, b: Option<Pcts>| match (a, b) {
        (Some(a), Some(b)) if b.p50 > 0.0 => Some(a.p50 / b.p50),
        _ => None,
    };
    let mut out = Vec::new();
    for v in rows.iter().filter(|r| r.system == System::Vigil) {
        for c in rows
            .iter()
            .filter(|r| r.system == System::Corosync && r.nodes == v.nodes && r.drill == v.drill)
        {
            out.push(Ratio {
                nodes: v.nodes,
                drill: v.drill.clone(),
                vigil: v.setting.clone(),
                corosync: c.setting.clone(),
                to_membership: div(c.membership, v.membership),
                to_may_act: div(c.membership, v.may_act),
            });
        }
    }
    out
}

fn ms(v: Option<f64>) -> String {
    v.map_or_else(|| "-".to_string(), |m| format!("{m:.1}"))
}

fn times(v: Option<f64>) -> String {
    v.map_or_else(|| "-".to_string(), |x| format!("{x:.1}×"))
}

/// `rows` as a table: system, setting, drill, (with `token`) Corosync's effective
/// token, (with `nodes`) the size, repetitions, failures, then p50 and p99 of each
/// role; "-" where a role does not apply or has no sample. Rows with a note are
/// followed by it.
pub fn render_rows(rows: &[RoleRow], token: bool, nodes: bool) -> String {
    let mut out = String::new();
    let _ = write!(out, "{:<9} {:<26} {:<8} ", "", "", "");
    if token {
        let _ = write!(out, "{:>9} ", "");
    }
    if nodes {
        let _ = write!(out, "{:>5} ", "");
    }
    let _ = writeln!(
        out,
        "{:>4} {:>6} {:>19} {:>19} {:>19}",
        "", "", "new membership", "survivors may act", "last loser fenced"
    );
    let _ = write!(out, "{:<9} {:<26} {:<8} ", "system", "setting", "drill");
    if token {
        let _ = write!(out, "{:>9} ", "token ms");
    }
    if nodes {
        let _ = write!(out, "{:>5} ", "nodes");
    }
    let _ = writeln!(
        out,
        "{:>4} {:>6} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}",
        "reps", "failed", "p50", "p99", "p50", "p99", "p50", "p99"
    );
    for r in rows {
        let _ = write!(
            out,
            "{:<9} {:<26} {:<8} ",
            r.system.name(),
            r.setting,
            r.drill
        );
        if token {
            let t = r
                .effective_token_ms
                .map_or_else(|| "-".to_string(), |t| t.to_string());
            let _ = write!(out, "{t:>9} ");
        }
        if nodes {
            let _ = write!(out, "{:>5} ", r.nodes);
        }
        let _ = writeln!(
            out,
            "{:>4} {:>6} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}",
            r.reps,
            r.failed,
            ms(r.membership.map(|p| p.p50)),
            ms(r.membership.map(|p| p.p99)),
            ms(r.may_act.map(|p| p.p50)),
            ms(r.may_act.map(|p| p.p99)),
            ms(r.loser_out.map(|p| p.p50)),
            ms(r.loser_out.map(|p| p.p99)),
        );
        if let Some(n) = &r.note {
            let _ = writeln!(out, "    ^ {n}");
        }
    }
    out
}

/// `ratios` as a table (p50 ÷ p50).
pub fn render_ratios(ratios: &[Ratio]) -> String {
    let mut out = format!(
        "{:<8} {:<16} {:<26} {:>26} {:>28}\n",
        "drill", "vigil", "Corosync", "÷ vigil new membership", "÷ vigil survivors may act"
    );
    for r in ratios {
        let _ = writeln!(
            out,
            "{:<8} {:<16} {:<26} {:>26} {:>28}",
            r.drill,
            r.vigil,
            r.corosync,
            times(r.to_membership),
            times(r.to_may_act)
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roles(membership: f64, may_act: f64, loser_out: Option<f64>) -> RoleTimes {
        RoleTimes {
            may_act: Some(may_act),
            loser_out,
            membership: Some(membership),
        }
    }

    #[test]
    fn percentiles_are_nearest_rank() {
        let table: [(&[f64], u32, Option<f64>); 7] = [
            (&[], 50, None),
            (&[7.5], 50, Some(7.5)),
            (&[7.5], 99, Some(7.5)),
            (&[5.0, 1.0, 4.0, 2.0, 3.0], 50, Some(3.0)),
            (&[5.0, 1.0, 4.0, 2.0, 3.0], 99, Some(5.0)),
            (&[1.0, 2.0, 3.0, 4.0], 50, Some(2.0)),
            (&[4.0, 3.0, 2.0, 1.0], 1, Some(1.0)),
        ];
        for (values, p, want) in table {
            assert_eq!(percentile_ms(values, p), want, "{values:?} p{p}");
        }
        let hundred: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile_ms(&hundred, 99), Some(99.0));
    }

    #[test]
    fn a_vigil_row_has_each_roles_percentiles() {
        let samples = [
            roles(600.0, 790.0, Some(805.0)),
            roles(602.0, 795.0, Some(801.0)),
            roles(598.0, 799.0, Some(812.0)),
        ];
        assert_eq!(
            vigil_row("default profile", "isolate", 5, &samples, 1),
            RoleRow {
                system: System::Vigil,
                setting: "default profile".into(),
                drill: "isolate".into(),
                nodes: 5,
                effective_token_ms: None,
                reps: 3,
                failed: 1,
                membership: Some(Pcts {
                    p50: 600.0,
                    p99: 602.0
                }),
                may_act: Some(Pcts {
                    p50: 795.0,
                    p99: 799.0
                }),
                loser_out: Some(Pcts {
                    p50: 805.0,
                    p99: 812.0
                }),
                note: None,
            }
        );
    }

    #[test]
    fn a_kill_has_no_loser_and_no_samples_no_figures() {
        let kill = [roles(590.0, 600.0, None), roles(591.0, 605.0, None)];
        let row = vigil_row("fast profile", "kill", 9, &kill, 0);
        assert_eq!(row.loser_out, None);
        assert_eq!(
            row.may_act,
            Some(Pcts {
                p50: 600.0,
                p99: 605.0
            })
        );
        let empty = vigil_row("fast profile", "kill", 9, &[], 3);
        assert_eq!(
            (empty.reps, empty.failed, empty.membership, empty.may_act),
            (0, 3, None, None)
        );
    }

    #[test]
    fn a_corosync_row_has_only_the_membership() {
        assert_eq!(
            corosync_row("default", "kill", 16, 12100, &[26000.0, 25000.0], None),
            RoleRow {
                system: System::Corosync,
                setting: "default".into(),
                drill: "kill".into(),
                nodes: 16,
                effective_token_ms: Some(12100),
                reps: 2,
                failed: 0,
                membership: Some(Pcts {
                    p50: 25000.0,
                    p99: 26000.0
                }),
                may_act: None,
                loser_out: None,
                note: None,
            }
        );
        let broken = corosync_row("default", "kill", 16, 12100, &[], Some("did not form"));
        assert_eq!(
            (broken.reps, broken.failed, broken.membership, broken.note),
            (0, 1, None, Some("did not form".to_string()))
        );
    }

    #[test]
    fn ratios_pair_every_vigil_row_with_every_corosync_row_of_its_drill_and_size() {
        let v = |setting: &str, drill: &str, nodes, m: f64, a: f64| {
            vigil_row(setting, drill, nodes, &[roles(m, a, None)], 0)
        };
        let rows = [
            v("default profile", "kill", 5, 500.0, 600.0),
            v("fast profile", "kill", 5, 50.0, 80.0),
            v("default profile", "isolate", 5, 400.0, 800.0),
            v("default profile", "kill", 9, 500.0, 625.0),
            corosync_row("default", "kill", 5, 4950, &[10000.0], None),
            corosync_row("token 500", "kill", 5, 500, &[1000.0], None),
            corosync_row("default", "isolate", 5, 4950, &[], Some("no cluster")),
            corosync_row("default", "kill", 9, 7550, &[15000.0], None),
        ];
        let r = |drill: &str, nodes, vigil: &str, corosync: &str, m, a| Ratio {
            nodes,
            drill: drill.into(),
            vigil: vigil.into(),
            corosync: corosync.into(),
            to_membership: m,
            to_may_act: a,
        };
        assert_eq!(
            ratios(&rows),
            vec![
                r(
                    "kill",
                    5,
                    "default profile",
                    "default",
                    Some(20.0),
                    Some(10000.0 / 600.0)
                ),
                r(
                    "kill",
                    5,
                    "default profile",
                    "token 500",
                    Some(2.0),
                    Some(1000.0 / 600.0)
                ),
                r(
                    "kill",
                    5,
                    "fast profile",
                    "default",
                    Some(200.0),
                    Some(125.0)
                ),
                r(
                    "kill",
                    5,
                    "fast profile",
                    "token 500",
                    Some(20.0),
                    Some(12.5)
                ),
                r("isolate", 5, "default profile", "default", None, None),
                r(
                    "kill",
                    9,
                    "default profile",
                    "default",
                    Some(30.0),
                    Some(24.0)
                ),
            ]
        );
    }

    #[test]
    fn tables_show_a_dash_where_a_role_does_not_apply() {
        let rows = [
            vigil_row(
                "fast profile",
                "isolate",
                5,
                &[roles(50.0, 90.0, Some(95.0))],
                0,
            ),
            corosync_row("default", "isolate", 5, 4950, &[10500.0], None),
            corosync_row("default", "kill", 16, 12100, &[], Some("did not form")),
        ];
        let text = render_rows(&rows, true, false);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 6, "{text}");
        let cells = |l: &str| l.split_whitespace().map(str::to_string).collect::<Vec<_>>();
        assert_eq!(
            cells(lines[2]),
            [
                "vigil", "fast", "profile", "isolate", "-", "1", "0", "50.0", "50.0", "90.0",
                "90.0", "95.0", "95.0"
            ]
        );
        assert_eq!(
            cells(lines[3]),
            [
                "Corosync", "default", "isolate", "4950", "1", "0", "10500.0", "10500.0", "-", "-",
                "-", "-"
            ]
        );
        assert_eq!(lines[5], "    ^ did not form");
    }
}
