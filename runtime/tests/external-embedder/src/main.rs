//! Three nodes of a loopback cluster, embedded in one process through
//! `vigil_runtime`'s public API: start them, wait until they agree on a view and a
//! primary, print the fencing token, have the primary leave gracefully, and check
//! that the others hand over with a higher token.

use std::time::{Duration, Instant};
use vigil_runtime::{ClusterConfig, ControlSocket, NodeHandle, Options};

fn main() -> std::process::ExitCode {
    let dir = std::env::temp_dir().join(format!("vigil-embedder-{}", std::process::id()));
    match run(&dir) {
        Ok(()) => {
            let _ = std::fs::remove_dir_all(&dir);
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("external-embedder: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run(dir: &std::path::Path) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
    let cfg = write_config(dir)?;
    let mut nodes = Vec::new();
    for name in ["n0", "n1", "n2"] {
        let options = Options {
            control_socket: ControlSocket::At(dir.join(format!("{name}.sock"))),
            realtime: false,
            ..Options::default()
        };
        nodes.push(vigil_runtime::start(cfg.clone(), name, options).map_err(|e| e.to_string())?);
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    rt.block_on(async {
        let first = agree(&nodes, 3).await?;
        println!(
            "view {:?}: primary n{}, token {}",
            first.1, first.0, first.2
        );
        let primary = nodes
            .iter()
            .position(|n| n.id().0 == first.0)
            .ok_or("the primary is not one of ours")?;
        let leaving = nodes.remove(primary);
        leaving.leave().await?;
        let ending = leaving.wait().await;
        println!("the primary left: {ending:?}");
        let second = agree(&nodes, 2).await?;
        println!(
            "view {:?}: primary n{}, token {}",
            second.1, second.0, second.2
        );
        if second.2 <= first.2 {
            return Err(format!(
                "the token did not grow: {} then {}",
                first.2, second.2
            ));
        }
        for n in &nodes {
            n.shutdown();
            n.wait().await;
        }
        Ok(())
    })
}

/// Wait until `count` nodes hold authority on one view with one primary; that
/// primary, the members and the token.
async fn agree(nodes: &[NodeHandle], count: usize) -> Result<(u8, Vec<u8>, u64), String> {
    let until = Instant::now() + Duration::from_secs(20);
    while Instant::now() < until {
        let held: Vec<_> = nodes.iter().filter_map(|n| n.current_authority()).collect();
        if held.len() == nodes.len() {
            let a = &held[0];
            let same = held
                .iter()
                .all(|b| b.token == a.token && b.primary == a.primary);
            let primaries = held.iter().filter(|b| b.is_valid_primary()).count();
            if same && primaries == 1 && a.view.members.len() == count {
                let members = a.view.members.iter().map(|m| m.id.0).collect();
                return Ok((a.primary.0, members, a.token.0));
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Err("the nodes did not agree on a view and a primary within 20 s".into())
}

fn write_config(dir: &std::path::Path) -> Result<ClusterConfig, String> {
    use std::os::unix::fs::OpenOptionsExt;
    let key = dir.join("cluster.key");
    let material: Vec<u8> = (0..32u8)
        .map(|i| i.wrapping_mul(37) ^ (std::process::id() as u8))
        .collect();
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&key)
        .map_err(|e| format!("{}: {e}", key.display()))?;
    std::io::Write::write_all(&mut f, &material).map_err(|e| e.to_string())?;
    let ports: Vec<u16> = (0..3)
        .map(|_| {
            std::net::UdpSocket::bind("127.0.0.1:0")
                .and_then(|s| s.local_addr())
                .map(|a| a.port())
        })
        .collect::<Result<_, _>>()
        .map_err(|e| e.to_string())?;
    let mut text = format!(
        "[cluster]\nname = \"embedded\"\nid = 4242\nkey_file = \"{}\"\nstate_dir = \"{}\"\nrun_dir = \"{}\"\n\n[timers]\nprofile = \"fast\"\n\n[[links]]\nname = \"lo\"\nkind = \"udp\"\n\n",
        key.display(),
        dir.join("state").display(),
        dir.display()
    );
    for (i, port) in ports.iter().enumerate() {
        text.push_str(&format!(
            "[[nodes]]\nname = \"n{i}\"\nid = {i}\n[nodes.links]\nlo = \"127.0.0.1:{port}\"\n\n"
        ));
    }
    let path = dir.join("cluster.toml");
    std::fs::write(&path, &text).map_err(|e| e.to_string())?;
    ClusterConfig::load(&path).map_err(|e| e.to_string())
}
