//! The inspection commands' end of the control socket: the client is
//! [`vigil_runtime::client`]; this finds which socket a command line means.

pub use vigil_runtime::control::*;

use std::path::PathBuf;

/// Resolve an inspection command's target to a socket path.
pub fn resolve(target: &crate::Target) -> Result<PathBuf, String> {
    if let Some(s) = &target.socket {
        return Ok(s.clone());
    }
    let cfg = vigil::config::ClusterConfig::load(&target.config).map_err(|e| e.to_string())?;
    match &target.node {
        Some(name) => cfg
            .node_by_name(name)
            .map(|n| cfg.socket_path(n))
            .ok_or_else(|| format!("{}: no node named {name}", target.config.display())),
        None => {
            let live: Vec<PathBuf> = cfg
                .nodes
                .iter()
                .map(|n| cfg.socket_path(n))
                .filter(|p| p.exists())
                .collect();
            match live.as_slice() {
                [one] => Ok(one.clone()),
                [] => Err(format!(
                    "no control socket of any node in {} exists; is the daemon running? (use --socket or --node)",
                    target.config.display()
                )),
                _ => Err("several nodes of this config run here; choose one with --node".into()),
            }
        }
    }
}
