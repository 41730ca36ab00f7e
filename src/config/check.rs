//! [`ClusterConfig::check`]: every problem in a config file in one run, each with its
//! line and column, and "did you mean" for a misspelt key.
//!
//! The file is read twice with `toml_edit`: once as it is, for the positions, and once
//! to be cleaned of the unknown keys so the rest can still be loaded and validated.

use super::{ClusterConfig, ConfigError};
use std::fmt;
use std::ops::Range;
use std::path::Path;
use toml_edit::{DocumentMut, ImDocument, Item, TableLike};

/// A problem [`ClusterConfig::check`] found, with its place in the file when known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Located {
    /// File, field and reason.
    pub error: ConfigError,
    /// 1-based line and column of the field (or of the nearest table that holds it).
    pub position: Option<(usize, usize)>,
}

impl fmt::Display for Located {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let e = &self.error;
        match self.position {
            Some((line, column)) => write!(
                f,
                "{}:{line}:{column}: {}: {}",
                e.file.display(),
                e.field,
                e.reason
            ),
            None => write!(f, "{e}"),
        }
    }
}

/// The keys each table takes; `None` for a table whose keys are names (a node's links).
fn known_keys(table: &str) -> Option<&'static [&'static str]> {
    Some(match table {
        "" => &[
            "cluster", "timers", "links", "nodes", "daemon", "watchdog", "probes", "hooks",
            "metrics",
        ],
        "cluster" => &[
            "name",
            "id",
            "seed",
            "fencing",
            "self_fence",
            "self_fence_hook",
            "key_file",
            "insecure",
            "accept_key_files",
            "state_dir",
            "run_dir",
            "fault_injection",
            "max_drift_ppm",
        ],
        "timers" => &[
            "profile",
            "heartbeat",
            "heartbeat_lowpri",
            "peer_trouble",
            "peer_inactive",
            "link_up_count",
            "race_timeout",
            "lease",
            "stall_report",
        ],
        "daemon" => &[
            "realtime",
            "rt_priority",
            "mlockall",
            "stall_action",
            "control_group",
        ],
        "watchdog" => &["device", "timeout", "softdog"],
        "metrics" => &["listen"],
        "links" => &[
            "name",
            "kind",
            "priority",
            "port",
            "ethertype",
            "interface",
            "dscp",
        ],
        "nodes" => &["id", "name", "socket", "weight", "links"],
        "nodes.links.*" => &["address", "interface"],
        "probes" => &[
            "name",
            "kind",
            "command",
            "expect_exit",
            "path",
            "interval",
            "timeout",
            "threshold",
            "on_failure",
            "nodes",
        ],
        "hooks" => &["name", "command", "on", "timeout"],
        _ => return None,
    })
}

/// Edit distance (Levenshtein) between two short keys.
fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != *cb)).min(row[j] + 1).min(cur + 1);
            prev = cur;
        }
    }
    row[b.len()]
}

/// The known key closest to `key`, if it is close enough to be a misspelling.
fn closest(key: &str, known: &[&'static str]) -> Option<&'static str> {
    known
        .iter()
        .map(|k| (distance(key, k), *k))
        .filter(|(d, k)| *d <= (k.len() / 3).max(2))
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

/// The tables an item holds: itself, or each element of an array of tables.
fn tables(item: &Item) -> Vec<(Option<usize>, &dyn TableLike)> {
    if let Some(aot) = item.as_array_of_tables() {
        return aot
            .iter()
            .enumerate()
            .map(|(i, t)| (Some(i), t as &dyn TableLike))
            .collect();
    }
    if let Some(arr) = item.as_array() {
        return arr
            .iter()
            .enumerate()
            .filter_map(|(i, v)| v.as_inline_table().map(|t| (Some(i), t as &dyn TableLike)))
            .collect();
    }
    item.as_table_like()
        .map(|t| vec![(None, t)])
        .unwrap_or_default()
}

/// An unknown key: its field path (as `ConfigError`s name fields) and where it is.
struct Unknown {
    /// Segments to remove it: (key, index into an array of tables).
    segments: Vec<(String, Option<usize>)>,
    field: String,
    reason: String,
    span: Option<Range<usize>>,
}

fn walk(
    table: &dyn TableLike,
    schema: &str,
    segments: &[(String, Option<usize>)],
    out: &mut Vec<Unknown>,
) {
    let Some(known) = known_keys(schema) else {
        return;
    };
    for (key, item) in table.iter() {
        let mut here = segments.to_vec();
        here.push((key.to_string(), None));
        if !known.contains(&key) {
            let mut reason = format!("unknown field `{key}`");
            if let Some(k) = closest(key, known) {
                reason.push_str(&format!(", did you mean `{k}`?"));
            } else {
                reason.push_str(&format!("; expected one of {}", known.join(", ")));
            }
            out.push(Unknown {
                field: field_name(&here),
                segments: here,
                reason,
                span: table
                    .get_key_value(key)
                    .and_then(|(k, _)| k.span())
                    .or_else(|| item.span()),
            });
            continue;
        }
        let child = match (schema, key) {
            ("", _) => key.to_string(),
            ("nodes", "links") => {
                // A node's links: keys are link names; table values take two keys.
                if let Some(links) = item.as_table_like() {
                    for (name, v) in links.iter() {
                        if let Some(t) = v.as_table_like() {
                            let mut p = here.clone();
                            p.push((name.to_string(), None));
                            walk(t, "nodes.links.*", &p, out);
                        }
                    }
                }
                continue;
            }
            _ => continue,
        };
        for (i, t) in tables(item) {
            let mut p = here.clone();
            if let Some(last) = p.last_mut() {
                last.1 = i;
            }
            walk(t, &child, &p, out);
        }
    }
}

/// `nodes[1].links.b` from its segments.
fn field_name(segments: &[(String, Option<usize>)]) -> String {
    let mut s = String::new();
    for (k, i) in segments {
        if !s.is_empty() {
            s.push('.');
        }
        s.push_str(k);
        if let Some(i) = i {
            s.push_str(&format!("[{i}]"));
        }
    }
    s
}

/// `nodes[1].links.b` as segments; `None` for a field that is no path (`(file)`).
fn parse_field(field: &str) -> Option<Vec<(String, Option<usize>)>> {
    field
        .split('.')
        .map(|seg| match seg.split_once('[') {
            Some((k, rest)) => Some((k.to_string(), rest.trim_end_matches(']').parse().ok())),
            None if seg.is_empty() || seg.contains(' ') || seg.contains('(') => None,
            None => Some((seg.to_string(), None)),
        })
        .collect()
}

/// The span of the deepest part of `segments` present in the document: the key of
/// the field, or the table that should hold it.
fn locate(doc: &ImDocument<&str>, segments: &[(String, Option<usize>)]) -> Option<Range<usize>> {
    let mut table: &dyn TableLike = doc.as_table();
    let mut best = None;
    for (key, index) in segments {
        let (k, item) = table.get_key_value(key)?;
        best = k.span().or_else(|| item.span()).or(best);
        let inner = match index {
            Some(i) => {
                let ts = tables(item);
                let (_, t) = ts.into_iter().find(|(j, _)| *j == Some(*i))?;
                t
            }
            None => match item.as_table_like() {
                Some(t) => t,
                None => return best,
            },
        };
        // An element of an array of tables: its header is the best place.
        if index.is_some() {
            if let Some(aot) = item.as_array_of_tables() {
                if let Some(span) = index.and_then(|i| aot.get(i)).and_then(|t| t.span()) {
                    best = Some(span);
                }
            }
        }
        table = inner;
    }
    best
}

fn position(text: &str, span: Option<Range<usize>>) -> Option<(usize, usize)> {
    let start = span?.start.min(text.len());
    let before = &text[..start];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    Some((line, column))
}

fn remove(doc: &mut DocumentMut, segments: &[(String, Option<usize>)]) {
    fn go(table: &mut dyn TableLike, segments: &[(String, Option<usize>)]) {
        let Some(((key, index), rest)) = segments.split_first() else {
            return;
        };
        if rest.is_empty() {
            table.remove(key);
            return;
        }
        let Some(item) = table.get_mut(key) else {
            return;
        };
        let next: Option<&mut dyn TableLike> = match index {
            Some(i) => {
                if item.is_array_of_tables() {
                    item.as_array_of_tables_mut()
                        .and_then(|a| a.get_mut(*i))
                        .map(|t| t as &mut dyn TableLike)
                } else {
                    item.as_array_mut()
                        .and_then(|a| a.get_mut(*i))
                        .and_then(|v| v.as_inline_table_mut())
                        .map(|t| t as &mut dyn TableLike)
                }
            }
            None => item.as_table_like_mut(),
        };
        if let Some(t) = next {
            go(t, rest);
        }
    }
    go(doc.as_table_mut(), segments);
}

impl ClusterConfig {
    /// Every problem in `text` that can be found in one run: all unknown keys (with
    /// the closest known key), then the first type error or, failing none, every
    /// broken rule [`validate_all`](Self::validate_all) finds. Each carries its line
    /// and column. Empty: the file loads. `vigil config check` prints these;
    /// [`parse`](Self::parse) still returns the first problem alone.
    pub fn check(text: &str, source: &Path) -> Vec<Located> {
        let located = |error: ConfigError, span: Option<Range<usize>>| Located {
            position: position(text, span),
            error,
        };
        let doc = match ImDocument::parse(text) {
            Ok(d) => d,
            Err(e) => {
                let reason = e.message().lines().next().unwrap_or("invalid TOML").trim();
                let at = position(text, e.span());
                let field = at.map_or("(document)".into(), |(l, c)| {
                    format!("line {l}, column {c}")
                });
                return vec![Located {
                    error: ConfigError::new(source, field, reason),
                    position: at,
                }];
            }
        };
        let mut unknown = Vec::new();
        walk(doc.as_table(), "", &[], &mut unknown);
        let mut out: Vec<Located> = Vec::new();
        let mut cleaned = text.to_string();
        if !unknown.is_empty() {
            match text.parse::<DocumentMut>() {
                Ok(mut d) => {
                    for u in &unknown {
                        remove(&mut d, &u.segments);
                    }
                    cleaned = d.to_string();
                }
                Err(_) => cleaned.clear(),
            }
        }
        for u in unknown {
            out.push(located(ConfigError::new(source, u.field, u.reason), u.span));
        }
        let locate_field = |e: ConfigError| {
            let span = parse_field(&e.field).and_then(|segs| locate(&doc, &segs));
            located(e, span)
        };
        if cleaned.is_empty() {
            return out;
        }
        match super::load_unvalidated(&cleaned, source) {
            Ok(cfg) => out.extend(cfg.validate_all().into_iter().map(locate_field)),
            Err(e) => {
                // A syntax position refers to the cleaned text only when nothing
                // was removed; a field path is found in the original.
                out.push(locate_field(e));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn closest_known_key() {
        assert_eq!(
            closest("peer_inactiv", known_keys("timers").unwrap()),
            Some("peer_inactive")
        );
        assert_eq!(
            closest("hartbeat", known_keys("timers").unwrap()),
            Some("heartbeat")
        );
        assert_eq!(closest("zzzzzz", known_keys("timers").unwrap()), None);
        assert_eq!(distance("kitten", "sitting"), 3);
    }

    #[test]
    fn three_errors_in_one_run_with_lines() {
        let text = r#"[cluster]
name = "demo"
id = 7
insecure = true

[timers]
heartbeat = 100
peer_inactiv = 600
peer_trouble = 50

[[links]]
name = "a"
kind = "udp"
port = 5101

[[nodes]]
id = 0
name = "n0"
links = { a = "10.0.0.1" }

[[nodes]]
id = 0
name = "n1"
links = { a = "10.0.0.2" }
"#;
        let found = ClusterConfig::check(text, Path::new("c.toml"));
        let shown: Vec<String> = found.iter().map(ToString::to_string).collect();
        assert_eq!(found.len(), 3, "{shown:#?}");
        assert_eq!(found[0].position, Some((8, 1)), "{shown:#?}");
        assert!(
            shown[0].contains("did you mean `peer_inactive`?"),
            "{shown:#?}"
        );
        assert_eq!(found[1].error.field, "timers.peer_trouble", "{shown:#?}");
        assert_eq!(found[1].position.map(|p| p.0), Some(9), "{shown:#?}");
        assert_eq!(found[2].error.field, "nodes[1].id", "{shown:#?}");
        assert_eq!(found[2].position.map(|p| p.0), Some(22), "{shown:#?}");
        // The loader still stops at the first.
        assert!(ClusterConfig::parse(text, Path::new("c.toml")).is_err());
        assert!(ClusterConfig::check("[cluster]\nname = \"x\"\nid = 1\ninsecure = true\n[[links]]\nname = \"a\"\nkind = \"udp\"\nport = 1\n[[nodes]]\nid = 0\nname = \"n\"\nlinks = { a = \"10.0.0.1\" }\n", Path::new("c.toml")).is_empty());
    }
}
