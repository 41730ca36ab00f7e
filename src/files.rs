//! Files and directories the daemon trusts: the config file, the key file, the state
//! directory and its generation file, the control socket's directory.
//!
//! A trusted file is opened without blocking (a FIFO put in its place cannot hang the
//! reader), checked with `fstat` on the open descriptor to be a regular file (so a
//! swap between a check and the open changes nothing), and read up to a bound (so
//! `/dev/zero` or a runaway file cannot exhaust memory). A trusted directory is owned
//! by the process's effective user and not writable by group or others, so nobody
//! else can plant, replace or remove what is in it. Reasons returned here do not
//! repeat the path; callers name it.
//!
//! This is the one module of the root crate that calls `libc` directly.

use std::fs::{File, Metadata, OpenOptions};
use std::io::Read;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::Path;

/// The process's effective user ID.
pub fn euid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// What kind of file `meta` describes, in words: `a directory`, `a FIFO`, ...
pub fn kind(meta: &Metadata) -> &'static str {
    let t = meta.file_type();
    if t.is_file() {
        "a regular file"
    } else if t.is_dir() {
        "a directory"
    } else if t.is_symlink() {
        "a symbolic link"
    } else if t.is_fifo() {
        "a FIFO"
    } else if t.is_char_device() {
        "a character device"
    } else if t.is_block_device() {
        "a block device"
    } else if t.is_socket() {
        "a socket"
    } else {
        "not a regular file"
    }
}

fn not_regular(meta: &Metadata) -> String {
    format!("it is {}, not a regular file", kind(meta))
}

/// Open the regular file at `path` for reading, without blocking and, unless
/// `follow`, without following a symbolic link in its last component. Anything
/// but a regular file is refused before it is opened (a device is never opened)
/// and again on the open descriptor.
pub fn open_regular(path: &Path, follow: bool) -> Result<(File, Metadata), String> {
    let before = if follow {
        std::fs::metadata(path)
    } else {
        std::fs::symlink_metadata(path)
    };
    match before {
        Ok(m) if !m.is_file() => {
            return Err(if m.file_type().is_symlink() {
                "it is a symbolic link; refusing to follow it".into()
            } else {
                not_regular(&m)
            })
        }
        Ok(_) => {}
        Err(e) => return Err(format!("cannot read it: {e}")),
    }
    let mut flags = libc::O_NONBLOCK;
    if !follow {
        flags |= libc::O_NOFOLLOW;
    }
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(flags)
        .open(path)
        .map_err(|e| {
            if e.raw_os_error() == Some(libc::ELOOP) && !follow {
                "it is a symbolic link; refusing to follow it".to_string()
            } else {
                format!("cannot read it: {e}")
            }
        })?;
    let meta = file
        .metadata()
        .map_err(|e| format!("cannot read it: {e}"))?;
    if !meta.is_file() {
        return Err(not_regular(&meta));
    }
    Ok((file, meta))
}

/// Read the regular file at `path` (see [`open_regular`]), refusing one longer than
/// `max` bytes; its bytes and its metadata.
pub fn read_bounded(path: &Path, follow: bool, max: u64) -> Result<(Vec<u8>, Metadata), String> {
    let (file, meta) = open_regular(path, follow)?;
    let too_long = |len: u64| format!("it holds {len} bytes, more than the {max} allowed");
    if meta.len() > max {
        return Err(too_long(meta.len()));
    }
    let mut bytes = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0));
    file.take(max + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read it: {e}"))?;
    if bytes.len() as u64 > max {
        return Err(too_long(bytes.len() as u64));
    }
    Ok((bytes, meta))
}

/// The owner of `meta` is this process's effective user (or root, when
/// `root_too`); otherwise why not and how to fix it.
pub fn check_owner(meta: &Metadata, path: &Path, root_too: bool) -> Result<(), String> {
    let (owner, me) = (meta.uid(), euid());
    if owner == me || (root_too && owner == 0) {
        return Ok(());
    }
    Err(format!(
        "it is owned by uid {owner}, not by the daemon's user (uid {me}){}; fix with: chown {me} {}",
        if root_too { " or root" } else { "" },
        path.display()
    ))
}

/// Neither group nor others may write to `meta`; otherwise why not and how to fix it.
pub fn check_not_shared_writable(meta: &Metadata, path: &Path) -> Result<(), String> {
    let mode = meta.mode() & 0o7777;
    if mode & 0o022 == 0 {
        return Ok(());
    }
    Err(format!(
        "it has mode {mode:04o}: group or others may write to it; fix with: chmod go-w {}",
        path.display()
    ))
}

/// Create the directory `path` (and missing parents) with mode 0700 if it does not
/// exist, then check that it is a directory owned by this process's effective user
/// that neither group nor others may write to. `what` names it in errors (`state
/// directory`).
pub fn private_dir(path: &Path, what: &str) -> Result<(), String> {
    let shown = path.display();
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(path)
        .map_err(|e| format!("cannot create {what} {shown}: {e}"))?;
    let meta = std::fs::metadata(path).map_err(|e| format!("cannot use {what} {shown}: {e}"))?;
    if !meta.is_dir() {
        return Err(format!(
            "cannot use {what} {shown}: it is {}, not a directory",
            kind(&meta)
        ));
    }
    check_owner(&meta, path, false)
        .and_then(|()| check_not_shared_writable(&meta, path))
        .map_err(|why| format!("refusing {what} {shown}: {why}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::TempDir;

    #[test]
    fn a_created_directory_is_private_and_shared_ones_are_refused() {
        use std::os::unix::fs::PermissionsExt;
        let d = TempDir::new("dir");
        let dir = d.0.join("a/b");
        private_dir(&dir, "state directory").unwrap();
        let mode = std::fs::metadata(&dir).unwrap().mode() & 0o777;
        assert_eq!(mode, 0o700);
        // 0755 is fine: only writing by group or others is refused.
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        private_dir(&dir, "state directory").unwrap();
        for bad in [0o775, 0o757, 0o1777] {
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(bad)).unwrap();
            let e = private_dir(&dir, "state directory").unwrap_err();
            assert!(e.contains(&dir.display().to_string()), "{e}");
            assert!(e.contains(&format!("mode {bad:04o}")), "{e}");
            assert!(e.contains("chmod go-w"), "{e}");
        }
    }

    #[test]
    fn devices_fifos_and_oversized_files_are_refused() {
        let e = read_bounded(Path::new("/dev/zero"), true, 1024).unwrap_err();
        assert!(e.contains("a character device, not a regular file"), "{e}");
        let d = TempDir::new("big");
        std::fs::create_dir_all(&d.0).unwrap();
        let f = d.0.join("f");
        std::fs::write(&f, [b'x'; 11]).unwrap();
        assert_eq!(read_bounded(&f, true, 11).unwrap().0.len(), 11);
        let e = read_bounded(&f, true, 10).unwrap_err();
        assert!(
            e.contains("holds 11 bytes, more than the 10 allowed"),
            "{e}"
        );
        let link = d.0.join("link");
        std::os::unix::fs::symlink(&f, &link).unwrap();
        assert!(read_bounded(&link, true, 100).is_ok());
        let e = read_bounded(&link, false, 100).unwrap_err();
        assert!(e.contains("symbolic link"), "{e}");
        let e = read_bounded(&d.0, true, 100).unwrap_err();
        assert!(e.contains("a directory, not a regular file"), "{e}");
    }
}
