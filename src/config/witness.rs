//! The witness's own configuration file: `vigil witness --config
//! /etc/vigil/witness.toml`.
//!
//! ```toml
//! [witness]
//! state_dir = "/var/lib/vigil-witness"   # default; {state_dir}/witness-{cluster id}.generation
//! run_dir = "/run/vigil-witness"         # default; {run_dir}/witness-{cluster id}.sock
//!
//! [[clusters]]                           # 1 to 64, one per cluster served
//! config = "/etc/vigil/demo.toml"        # a copy of that cluster's config file
//! key_file = "/etc/vigil/demo-witness.key"  # optional: else its [witness] key_file
//! ```
//!
//! A served cluster's file is read as the witness reads it
//! ([`ClusterConfig::load_for_witness`]): its `[witness]` table, links, nodes and
//! timers, never its cluster key (the witness's machine does not hold it). Clusters
//! are told apart by cluster ID, which must be unique here; relative paths are taken
//! relative to this file's directory.

use super::{ClusterConfig, ConfigError, MAX_CONFIG_LEN};
use serde::Deserialize;
use std::path::{Path, PathBuf};
use vigil_llt::types::ClusterId;

/// Default `witness.state_dir`.
pub const DEFAULT_WITNESS_STATE_DIR: &str = "/var/lib/vigil-witness";
/// Default `witness.run_dir`.
pub const DEFAULT_WITNESS_RUN_DIR: &str = "/run/vigil-witness";
/// Default path of the witness's config file.
pub const DEFAULT_WITNESS_CONFIG_PATH: &str = "/etc/vigil/witness.toml";
/// Most clusters one witness serves.
pub const MAX_SERVED_CLUSTERS: usize = 64;

/// A validated witness configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct WitnessFile {
    /// The file it was read from.
    pub source: PathBuf,
    /// `witness.state_dir`: where the witness keeps, per cluster, the generations
    /// it saw and the last value it accepted (its vote never goes back).
    pub state_dir: PathBuf,
    /// `witness.run_dir`: where the per-cluster control sockets live.
    pub run_dir: PathBuf,
    /// The `[[clusters]]` served, in file order.
    pub clusters: Vec<ServedCluster>,
}

/// One `[[clusters]]` entry, with the cluster's file read.
#[derive(Debug, Clone, PartialEq)]
pub struct ServedCluster {
    /// `config`: the copy of the cluster's config file.
    pub config_file: PathBuf,
    /// `key_file`: the witness's copy of the witness key, when it is not the path
    /// the cluster's `[witness] key_file` names.
    pub key_file: Option<PathBuf>,
    /// The cluster's config as the witness reads it.
    pub cluster: ClusterConfig,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWitnessFile {
    #[serde(default)]
    witness: RawWitnessSection,
    #[serde(default)]
    clusters: Vec<RawServed>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawWitnessSection {
    state_dir: Option<PathBuf>,
    run_dir: Option<PathBuf>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawServed {
    config: PathBuf,
    key_file: Option<PathBuf>,
}

impl WitnessFile {
    /// Reads the witness's file and every cluster file it names; the first problem
    /// is an error naming the file, the field and the reason.
    pub fn load(path: &Path) -> Result<WitnessFile, ConfigError> {
        let refuse = |why: String| ConfigError::new(path, "(file)", why);
        let (bytes, _) = crate::files::read_bounded(path, true, MAX_CONFIG_LEN).map_err(refuse)?;
        let text = String::from_utf8(bytes)
            .map_err(|e| refuse(format!("cannot read it: not UTF-8 text ({e})")))?;
        WitnessFile::parse(&text, path)
    }

    /// Parses `text` (read from `source`) and reads the cluster files it names.
    pub fn parse(text: &str, source: &Path) -> Result<WitnessFile, ConfigError> {
        let raw: RawWitnessFile = serde_path_to_error::deserialize(toml::Deserializer::new(text))
            .map_err(|e| super::toml_error(text, source, e))?;
        let base = source.parent().unwrap_or(Path::new(""));
        let resolve = |p: PathBuf| if p.is_relative() { base.join(p) } else { p };
        let err = |field: String, reason: String| ConfigError::new(source, field, reason);
        if raw.clusters.is_empty() || raw.clusters.len() > MAX_SERVED_CLUSTERS {
            return Err(err(
                "clusters".into(),
                format!(
                    "need 1 to {MAX_SERVED_CLUSTERS} [[clusters]] (each with config = \"a copy of the cluster's config file\"), got {}",
                    raw.clusters.len()
                ),
            ));
        }
        let mut clusters: Vec<ServedCluster> = Vec::with_capacity(raw.clusters.len());
        for (i, c) in raw.clusters.into_iter().enumerate() {
            if c.config.as_os_str().is_empty() {
                return Err(err(
                    format!("clusters[{i}].config"),
                    "must not be empty".into(),
                ));
            }
            let config_file = resolve(c.config);
            let key_file = c.key_file.map(&resolve);
            let cluster = ClusterConfig::load_for_witness(&config_file, key_file.clone())?;
            if let Some(j) = clusters
                .iter()
                .position(|o| o.cluster.cluster.id == cluster.cluster.id)
            {
                return Err(err(
                    format!("clusters[{i}].config"),
                    format!(
                        "{} has cluster ID {}, as {} (clusters[{j}]) does: a witness tells the clusters it serves apart by their IDs",
                        config_file.display(),
                        cluster.cluster.id.0,
                        clusters[j].config_file.display()
                    ),
                ));
            }
            clusters.push(ServedCluster {
                config_file,
                key_file,
                cluster,
            });
        }
        let w = raw.witness;
        Ok(WitnessFile {
            source: source.to_path_buf(),
            state_dir: resolve(
                w.state_dir
                    .unwrap_or_else(|| DEFAULT_WITNESS_STATE_DIR.into()),
            ),
            run_dir: resolve(w.run_dir.unwrap_or_else(|| DEFAULT_WITNESS_RUN_DIR.into())),
            clusters,
        })
    }

    /// The name of the witness's state for cluster `id`: `witness-{id}` (its state
    /// file is `{state_dir}/witness-{id}.generation`).
    pub fn state_name(id: ClusterId) -> String {
        format!("witness-{}", id.0)
    }

    /// The control socket of the witness's part in cluster `id`.
    pub fn socket_path(&self, id: ClusterId) -> PathBuf {
        self.run_dir
            .join(format!("{}.sock", WitnessFile::state_name(id)))
    }
}
