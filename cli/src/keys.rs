//! `vigil keygen PATH` makes a cluster key; `vigil key reload` has a running daemon
//! re-read its keys (a rotation without downtime); `vigil key status` shows the key
//! ring: which key frames are sent with, which they are accepted under.

use crate::control::{self, DaemonStatus, Request};
use crate::{exit, Target};
use clap::{Args, Subcommand};
use rand::RngCore;
use serde_json::{json, Value};
use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use vigil_llt::wire::FrameKey;
use vigil_llt::{DropReason, KeyId};

/// Bytes of key material `vigil keygen` writes.
pub const KEY_BYTES: usize = 32;

/// `vigil keygen`.
#[derive(Args, Debug)]
pub struct KeygenArgs {
    /// Where to write the key (created with mode 0600; an existing file is refused).
    pub path: PathBuf,
    /// Replace an existing file (atomically: a new file renamed over it).
    #[arg(long)]
    pub force: bool,
}

/// `vigil key`.
#[derive(Args, Debug)]
pub struct KeyArgs {
    #[command(subcommand)]
    pub command: KeyCommand,
}

#[derive(Subcommand, Debug)]
pub enum KeyCommand {
    /// Have the daemon re-read key_file and accept_key_files from its config file
    /// and use them from now on, without a restart (a key rotation step).
    Reload {
        #[command(flatten)]
        target: Target,
    },
    /// Show the key frames are sent with, the keys they are accepted under, and the
    /// frames dropped for a key this node does not hold.
    Status {
        /// Print one JSON document.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        target: Target,
    },
}

pub fn keygen(args: &KeygenArgs) -> u8 {
    match write_new_key(&args.path, args.force) {
        Ok(id) => {
            println!(
                "{}: new cluster key, key ID {id}; copy it to every node (mode 0600) and name it in cluster.key_file or cluster.accept_key_files",
                args.path.display()
            );
            exit::OK
        }
        Err(e) => {
            eprintln!("vigil keygen: {e}");
            exit::FAILURE
        }
    }
}

/// Write [`KEY_BYTES`] random bytes from the operating system to a new file at
/// `path`, mode 0600; its key ID. Without `force` an existing file is refused
/// (`O_EXCL`); with it, the key goes to a new file beside it that is renamed over
/// the old one, so no reader ever sees half a key or looser permissions.
pub fn write_new_key(path: &Path, force: bool) -> Result<KeyId, String> {
    let shown = path.display();
    let mut material = [0u8; KEY_BYTES];
    rand::rngs::OsRng
        .try_fill_bytes(&mut material)
        .map_err(|e| format!("cannot draw random bytes: {e}"))?;
    let id = FrameKey::from_material(&material).id;
    let create = |p: &Path| {
        OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(p)
    };
    let write = |p: &Path| -> Result<(), String> {
        let mut f = create(p).map_err(|e| match e.kind() {
            std::io::ErrorKind::AlreadyExists => format!(
                "{} exists; refusing to overwrite a key (use --force to replace it)",
                p.display()
            ),
            _ => format!("cannot create {}: {e}", p.display()),
        })?;
        f.write_all(&material)
            .and_then(|()| f.sync_all())
            .map_err(|e| format!("cannot write {}: {e}", p.display()))
    };
    if !force {
        write(path)?;
        return Ok(id);
    }
    let name = path
        .file_name()
        .ok_or_else(|| format!("{shown} names no file"))?;
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(format!(".new-{}", std::process::id()));
    let tmp = path.with_file_name(tmp_name);
    if let Err(e) = write(&tmp) {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        format!("cannot replace {shown}: {e}")
    })?;
    Ok(id)
}

pub fn run(args: KeyArgs) -> u8 {
    match args.command {
        KeyCommand::Reload { target } => reload(&target),
        KeyCommand::Status { json, target } => status(&target, json),
    }
}

fn reload(target: &Target) -> u8 {
    let socket = match control::resolve(target) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("vigil key reload: {e}");
            return exit::FAILURE;
        }
    };
    match control::command(&socket, &Request::KeyReload) {
        Ok(message) => {
            println!("vigil key reload: {message}");
            exit::OK
        }
        Err(e) => {
            eprintln!("vigil key reload: {e}");
            exit::FAILURE
        }
    }
}

fn status(target: &Target, as_json: bool) -> u8 {
    let s = match control::resolve(target).and_then(|p| control::status(&p)) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("vigil key status: {e}");
            return exit::FAILURE;
        }
    };
    if as_json {
        println!("{}", keys_json(&s));
    } else {
        print!("{}", keys_text(&s));
    }
    exit::OK
}

/// Frames dropped for `reason` on every link of this node.
fn drops(s: &DaemonStatus, reason: DropReason) -> u64 {
    s.node
        .llt
        .links
        .iter()
        .map(|l| l.stats.drops.get(reason))
        .sum()
}

/// The key ring as JSON: `{"authenticated": bool, "send": "1a2b3c4d" | null,
/// "accept": ["1a2b3c4d", ...], "drops": {"auth": N, "unknown_key": N}}`; key IDs
/// in hex, as `vigil keygen` prints them.
pub fn keys_json(s: &DaemonStatus) -> Value {
    let k = &s.node.llt.keys;
    json!({
        "authenticated": s.authenticated,
        "send": k.send.map(|id| id.to_string()),
        "accept": k.accept.iter().map(ToString::to_string).collect::<Vec<_>>(),
        "drops": {
            "auth": drops(s, DropReason::Auth),
            "unknown_key": drops(s, DropReason::UnknownKey),
        },
    })
}

/// The WARNING line every `lltstat` layout shows on an unauthenticated cluster.
pub const INSECURE_WARNING: &str = "WARNING: llt frames are NOT authenticated (cluster.insecure = true): anyone who can reach a cluster network can forge heartbeats and membership";

pub fn keys_text(s: &DaemonStatus) -> String {
    let k = &s.node.llt.keys;
    let mut out = format!("{} (node {}): ", s.node_name, s.local);
    match k.send {
        None => {
            out.push_str(INSECURE_WARNING);
            out.push('\n');
        }
        Some(send) => {
            let accept: Vec<String> = k.accept.iter().map(ToString::to_string).collect();
            out.push_str(&format!(
                "frames sent with key {send}, accepted under {}\n",
                accept.join(", ")
            ));
        }
    }
    out.push_str(&format!(
        "  dropped: {} for a key this node does not hold (unknown_key), {} with a missing or bad MAC (auth)\n",
        drops(s, DropReason::UnknownKey),
        drops(s, DropReason::Auth)
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn scratch(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("vigil-keygen-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).expect("scratch dir");
        d
    }

    #[test]
    fn keygen_writes_32_private_bytes_and_refuses_to_overwrite() {
        let d = scratch("w");
        let p = d.join("cluster.key");
        let id = write_new_key(&p, false).expect("writes");
        let bytes = std::fs::read(&p).expect("reads");
        assert_eq!(bytes.len(), KEY_BYTES);
        assert_eq!(FrameKey::from_material(&bytes).id, id);
        let mode = std::fs::metadata(&p).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);

        let e = write_new_key(&p, false).expect_err("exists");
        assert!(e.contains("refusing to overwrite"), "{e}");
        assert_eq!(std::fs::read(&p).expect("reads"), bytes, "untouched");

        // --force replaces it, still 0600, even over a file with loose permissions.
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        let id2 = write_new_key(&p, true).expect("replaces");
        assert_ne!(id2, id);
        let mode = std::fs::metadata(&p).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_ne!(std::fs::read(&p).expect("reads"), bytes);
        let left: Vec<_> = std::fs::read_dir(&d).expect("ls").collect();
        assert_eq!(left.len(), 1, "no temporary file left behind");
        let _ = std::fs::remove_dir_all(&d);
    }
}
