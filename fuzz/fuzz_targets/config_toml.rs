//! The config loader on arbitrary text: `ClusterConfig::parse` never panics (its
//! error, with line and column, renders), and a config it accepts builds the cores
//! for every node it names: validation once is enough.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::path::Path;
use vigil::config::ClusterConfig;
use vigil::types::{Generation, Incarnation, Instant};
use vigil::Node;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // A directory that does not exist: relative paths (a key file) resolve into it
    // and fail without touching the file system.
    let source = Path::new("/nonexistent/vigil-fuzz/cluster.toml");
    let cfg = match ClusterConfig::parse(text, source) {
        Ok(cfg) => cfg,
        Err(e) => {
            let _ = e.to_string();
            return;
        }
    };
    let llt = cfg.llt_config();
    let fence = cfg.fence_config();
    for node in &cfg.nodes {
        let built = Node::new(
            llt.clone(),
            fence.clone(),
            node.id,
            Incarnation(1),
            Instant::ZERO,
            0,
            Generation(0),
        );
        if let Err(e) = built {
            panic!("a validated config does not build node {}: {e:?}", node.id);
        }
    }
    let _ = cfg.validate();
});
