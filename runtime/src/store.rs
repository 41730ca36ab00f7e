//! Where the highest view generation this node has seen is kept, across restarts,
//! so that generations only grow, also after the whole cluster restarts:
//! [`GenerationStore`], with the state file ([`StateFile`]) as the default, and the
//! thread that writes to it off the node's thread.
//!
//! The state file:
//! One small text file per node, `{state_dir}/{node name}.generation`, holding
//! `generation N\n`, then the last view installed here (`installed G 0,1,2\n`) and
//! the last value accepted for a newer generation (`accepted G 0,1\n`) when there
//! are any: seeding checks that a group holds a quorum of each of them
//! ([`vigil_fence::Durable`]). A file with the first line only (written before views
//! were kept) is read as a generation without views. It is replaced atomically: the new content goes to a temporary
//! file in the same directory, which is fsynced, renamed over the old one, and then
//! the directory is fsynced, so that after a crash the file holds either the old or
//! the new generation, never a torn one.
//!
//! The directory must be owned by the daemon's user and not writable by group or
//! others (the daemon creates it 0700). The temporary file is created with
//! `O_CREAT | O_EXCL | O_NOFOLLOW`, so a link planted at its name is never written
//! through; the state file is opened without blocking and without following links,
//! and anything but a regular file is refused.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use vigil_fence::{Durable, KnownView};
use vigil_llt::types::{Generation, NodeId};
use vigil_membership::NodeSet;

/// Keeps, durably, the highest generation a node has seen and the views it knows
/// ([`Durable`]).
///
/// The runtime calls [`GenerationStore::load`] once at start, and
/// [`GenerationStore::store`] on a thread of its own for every change; the node
/// acts on what it stored only once `store` has returned `Ok`. An error stops the
/// node.
pub trait GenerationStore: Send + 'static {
    /// The state stored (generation 0 and no views when nothing was stored yet).
    /// An error when what is stored cannot be read: the node must not start and
    /// risk reusing generations or seeding beside a view it knew.
    fn load(&mut self) -> Result<Durable, String>;
    /// Make `state` durable: when this returns `Ok`, a crash cannot lose it.
    fn store(&mut self, state: &Durable) -> Result<(), String>;
    /// Where the generation is kept, for messages (a path, a URL).
    fn describe(&self) -> String;
}

impl GenerationStore for StateFile {
    fn load(&mut self) -> Result<Durable, String> {
        Ok(self.stored)
    }

    fn store(&mut self, state: &Durable) -> Result<(), String> {
        StateFile::store(self, *state)
    }

    fn describe(&self) -> String {
        self.path.display().to_string()
    }
}

/// A finished write.
#[derive(Debug)]
pub(crate) struct Stored {
    pub state: Durable,
    pub result: Result<(), String>,
    /// How long the write took.
    pub took: std::time::Duration,
}

/// The store on a thread of its own: the node hands it generations and goes on
/// with its heartbeats; each write's outcome comes back as a [`Stored`].
pub(crate) struct StoreWorker {
    tx: std::sync::mpsc::Sender<Durable>,
    describe: String,
    /// Fault injection (testing): milliseconds every write is made to take longer.
    delay_ms: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl StoreWorker {
    pub(crate) fn start(
        mut store: Box<dyn GenerationStore>,
        done: tokio::sync::mpsc::UnboundedSender<Stored>,
    ) -> Result<StoreWorker, String> {
        let describe = store.describe();
        let (tx, rx) = std::sync::mpsc::channel::<Durable>();
        let delay_ms = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let delay = delay_ms.clone();
        std::thread::Builder::new()
            .name("vigil-store".into())
            .spawn(move || {
                while let Ok(state) = rx.recv() {
                    let started = std::time::Instant::now();
                    let slow = delay.load(std::sync::atomic::Ordering::Relaxed);
                    if slow > 0 {
                        std::thread::sleep(std::time::Duration::from_millis(slow));
                    }
                    let result = store.store(&state);
                    let stored = Stored {
                        state,
                        result,
                        took: started.elapsed(),
                    };
                    if done.send(stored).is_err() {
                        break;
                    }
                }
            })
            .map_err(|e| format!("cannot start the generation store's thread: {e}"))?;
        Ok(StoreWorker {
            tx,
            describe,
            delay_ms,
        })
    }

    /// Fault injection (testing): make every write take `ms` longer.
    pub(crate) fn slow_down(&self, ms: u64) {
        self.delay_ms
            .store(ms, std::sync::atomic::Ordering::Relaxed);
    }

    /// The injected delay per write, in milliseconds.
    pub(crate) fn delay_ms(&self) -> u64 {
        self.delay_ms.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Hand `state` to the store; `false` if its thread has stopped.
    pub(crate) fn persist(&self, state: Durable) -> bool {
        self.tx.send(state).is_ok()
    }

    pub(crate) fn describe(&self) -> &str {
        &self.describe
    }
}

/// Longest state file accepted; anything longer is not ours.
const MAX_LEN: u64 = 4096;

/// One node's generation file.
#[derive(Debug)]
pub struct StateFile {
    dir: PathBuf,
    path: PathBuf,
    tmp: PathBuf,
    /// What was last read or written.
    stored: Durable,
}

impl StateFile {
    /// Open the state of node `node` in `dir`, creating `dir` (0700) if missing, and
    /// checking its owner and mode (see [`vigil::files::private_dir`]); read the
    /// generation stored there: 0 when there is no file yet. A file that cannot be
    /// read or does not hold a generation is an error naming it: the daemon must not
    /// start and risk reusing generations.
    pub fn open(dir: &Path, node: &str) -> Result<StateFile, String> {
        vigil::files::private_dir(dir, "state directory")?;
        let path = dir.join(format!("{node}.generation"));
        let tmp = dir.join(format!(".{node}.generation.tmp"));
        let stored = read(&path)?;
        Ok(StateFile {
            dir: dir.to_path_buf(),
            path,
            tmp,
            stored,
        })
    }

    /// The state file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Create the temporary file afresh: never through a link, never into a file
    /// someone else made. A regular file left by a crash between write and rename is
    /// ours (the directory is private) and is replaced; anything else is refused.
    fn create_tmp(&self) -> Result<File, String> {
        let create = || {
            OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .custom_flags(libc::O_NOFOLLOW)
                .open(&self.tmp)
        };
        let tmp = self.tmp.display();
        match create() {
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                let meta = std::fs::symlink_metadata(&self.tmp)
                    .map_err(|e| format!("temporary file {tmp}: {e}"))?;
                if !meta.is_file() {
                    return Err(format!(
                        "temporary file {tmp} already exists and is {}; refusing to write through it (remove it)",
                        vigil::files::kind(&meta)
                    ));
                }
                std::fs::remove_file(&self.tmp)
                    .map_err(|e| format!("cannot remove stale temporary file {tmp}: {e}"))?;
                create().map_err(|e| format!("temporary file {tmp}: {e}"))
            }
            r => r.map_err(|e| format!("temporary file {tmp}: {e}")),
        }
    }

    /// The generation last read or written.
    pub fn generation(&self) -> Generation {
        self.stored.highest
    }

    /// Everything last read or written.
    pub fn durable(&self) -> Durable {
        self.stored
    }

    /// Durably record `state` (a bare [`Generation`] is a state without views).
    /// Generations never go back: a state whose generation is below the stored one
    /// is stale, and one equal to what is stored is already covered; neither
    /// writes anything.
    pub fn store(&mut self, state: impl Into<Durable>) -> Result<(), String> {
        let state: Durable = state.into();
        if state.highest < self.stored.highest || state == self.stored {
            return Ok(());
        }
        let g = state.highest;
        let shown = self.path.display();
        if !g.is_valid() {
            return Err(format!(
                "refusing to write generation {} to state file {shown}: beyond the usable range ({})",
                g.0,
                Generation::MAX.0
            ));
        }
        let f = self
            .create_tmp()
            .map_err(|e| format!("cannot write state file {shown}: {e}"))?;
        let write = |mut f: File| -> std::io::Result<()> {
            f.write_all(render(&state).as_bytes())?;
            f.sync_all()?;
            drop(f);
            std::fs::rename(&self.tmp, &self.path)?;
            File::open(&self.dir)?.sync_all()
        };
        write(f).map_err(|e| format!("cannot write state file {shown}: {e}"))?;
        self.stored = state;
        Ok(())
    }
}

/// The file's text for `state`.
fn render(state: &Durable) -> String {
    let mut text = format!("generation {}\n", state.highest.0);
    let line = |name: &str, v: KnownView| {
        let ids: Vec<String> = v.members.iter().map(|m| m.0.to_string()).collect();
        format!("{name} {} {}\n", v.generation.0, ids.join(","))
    };
    if let Some(v) = state.installed {
        text += &line("installed", v);
    }
    if let Some(v) = state.accepted {
        text += &line("accepted", v);
    }
    text
}

/// What the file at `path` holds; generation 0 and no views when it does not exist.
fn read(path: &Path) -> Result<Durable, String> {
    let shown = path.display();
    match std::fs::symlink_metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Durable::default()),
        Err(e) => return Err(format!("cannot read state file {shown}: {e}")),
        Ok(_) => {}
    }
    // Without following links and without blocking (a FIFO must not hang the
    // daemon); the length is checked by `parse`.
    let (bytes, _) = vigil::files::read_bounded(path, false, MAX_LEN).map_err(|why| {
        format!("cannot read state file {shown}: {why}; refusing to start (it must be a regular file written by this daemon)")
    })?;
    let text = String::from_utf8_lossy(&bytes);
    parse(&text).map_err(|why| {
        format!("state file {shown} is corrupt: {why}; refusing to start (move it away only if you know the cluster's current generation is above it)")
    })
}

/// `generation N`, then at most one `installed G IDS` and one `accepted G IDS` line
/// (IDs comma-separated; trailing newline optional).
fn parse(text: &str) -> Result<Durable, String> {
    if text.len() as u64 > MAX_LEN {
        return Err(format!("longer than {MAX_LEN} bytes"));
    }
    let body = text.strip_suffix('\n').unwrap_or(text);
    let mut lines = body.split('\n');
    let highest = parse_generation(lines.next().unwrap_or(""))?;
    let mut state = Durable::from(highest);
    for (n, line) in lines.enumerate() {
        let lineno = n + 2;
        let mut words = line.split(' ');
        let (name, generation, ids) = (words.next(), words.next(), words.next());
        let (Some(name), Some(generation), Some(ids), None) = (name, generation, ids, words.next())
        else {
            return Err(format!(
                "line {lineno}: expected `installed|accepted GENERATION IDS`, found {line:?}"
            ));
        };
        let generation = generation
            .parse::<u64>()
            .map(Generation)
            .map_err(|e| format!("line {lineno}: bad generation {generation:?}: {e}"))?;
        if generation > highest {
            return Err(format!(
                "line {lineno}: view generation {} above the highest generation {}",
                generation.0, highest.0
            ));
        }
        let mut members = NodeSet::EMPTY;
        for id in ids.split(',') {
            let id = id
                .parse::<u8>()
                .ok()
                .and_then(NodeId::new)
                .ok_or_else(|| format!("line {lineno}: bad node ID {id:?}"))?;
            members.insert(id);
        }
        let view = Some(KnownView {
            generation,
            members,
        });
        match name {
            "installed" if state.installed.is_none() && state.accepted.is_none() => {
                state.installed = view
            }
            "accepted" if state.accepted.is_none() => state.accepted = view,
            _ => {
                return Err(format!(
                    "line {lineno}: unexpected {name:?} (expected one `installed` line, then one `accepted` line)"
                ))
            }
        }
    }
    Ok(state)
}

/// `generation N`.
fn parse_generation(line: &str) -> Result<Generation, String> {
    let Some(number) = line.strip_prefix("generation ") else {
        return Err(format!("expected `generation N`, found {line:?}"));
    };
    let g = number
        .parse::<u64>()
        .map(Generation)
        .map_err(|e| format!("bad generation {number:?}: {e}"))?;
    if g.next().is_none() {
        return Err(format!(
            "generation {} is at or beyond the top of the usable range ({}): no view can follow it",
            g.0,
            Generation::MAX.0
        ));
    }
    Ok(g)
}

#[cfg(test)]
mod tests {
    use super::*;
    use vigil::testing::{root_or_skip, TempDir};

    #[test]
    fn missing_is_zero_and_the_directory_is_created() {
        let d = TempDir::new("missing");
        let dir = d.0.join("deeper");
        let s = StateFile::open(&dir, "n0").unwrap();
        assert_eq!(s.generation(), Generation(0));
        assert!(dir.is_dir());
        assert_eq!(s.path(), dir.join("n0.generation"));
        assert!(!s.path().exists(), "opening writes nothing");
    }

    #[test]
    fn stores_and_reloads_and_never_goes_back() {
        let d = TempDir::new("store");
        let mut s = StateFile::open(&d.0, "n1").unwrap();
        s.store(Generation(17)).unwrap();
        assert_eq!(
            std::fs::read_to_string(d.0.join("n1.generation")).unwrap(),
            "generation 17\n"
        );
        s.store(Generation(5)).unwrap();
        assert_eq!(s.generation(), Generation(17));
        let again = StateFile::open(&d.0, "n1").unwrap();
        assert_eq!(again.generation(), Generation(17));
        let last = Generation(Generation::MAX.0 - 1);
        s.store(last).unwrap();
        assert_eq!(StateFile::open(&d.0, "n1").unwrap().generation(), last);
        assert!(s
            .store(Generation(u64::MAX))
            .unwrap_err()
            .contains("beyond"));
        // No temporary file is left behind, and other nodes' files are separate.
        let names: Vec<String> = std::fs::read_dir(&d.0)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, vec!["n1.generation".to_string()]);
        assert_eq!(
            StateFile::open(&d.0, "n2").unwrap().generation(),
            Generation(0)
        );
    }

    #[test]
    fn the_views_known_are_kept_and_read_back() {
        let d = TempDir::new("views");
        let mut s = StateFile::open(&d.0, "n0").unwrap();
        let ids = |v: &[u8]| v.iter().map(|i| NodeId(*i)).collect::<NodeSet>();
        let state = Durable {
            highest: Generation(9),
            installed: Some(KnownView {
                generation: Generation(7),
                members: ids(&[0, 1, 2]),
            }),
            accepted: Some(KnownView {
                generation: Generation(8),
                members: ids(&[0, 1]),
            }),
        };
        s.store(state).unwrap();
        assert_eq!(
            std::fs::read_to_string(d.0.join("n0.generation")).unwrap(),
            "generation 9\ninstalled 7 0,1,2\naccepted 8 0,1\n"
        );
        assert_eq!(StateFile::open(&d.0, "n0").unwrap().durable(), state);
        // The same generation with another view is written; an older one is not.
        let later = Durable {
            accepted: None,
            ..state
        };
        s.store(later).unwrap();
        assert_eq!(StateFile::open(&d.0, "n0").unwrap().durable(), later);
        s.store(Generation(3)).unwrap();
        assert_eq!(StateFile::open(&d.0, "n0").unwrap().durable(), later);
        // Files written before views were kept still read.
        std::fs::write(d.0.join("n0.generation"), "generation 4\n").unwrap();
        assert_eq!(
            StateFile::open(&d.0, "n0").unwrap().durable(),
            Durable::from(Generation(4))
        );
        for bad in [
            "generation 9\ninstalled 7\n",
            "generation 9\ninstalled 7 0,x\n",
            "generation 9\ninstalled 7 0,64\n",
            "generation 9\ninstalled 10 0,1\n",
            "generation 9\naccepted 8 0\ninstalled 7 0,1\n",
            "generation 9\ninstalled 7 0\ninstalled 8 0\n",
            "generation 9\nview 7 0\n",
        ] {
            std::fs::write(d.0.join("n0.generation"), bad).unwrap();
            let e = StateFile::open(&d.0, "n0").unwrap_err();
            assert!(e.contains("corrupt") && e.contains("line"), "{bad:?}: {e}");
        }
    }

    #[test]
    fn a_generation_at_the_top_of_its_range_is_refused_naming_the_file() {
        let d = TempDir::new("top");
        std::fs::create_dir_all(&d.0).unwrap();
        let path = d.0.join("n0.generation");
        for top in [Generation::MAX.0, Generation::MAX.0 + 1, u64::MAX] {
            std::fs::write(&path, format!("generation {top}\n")).unwrap();
            let e = StateFile::open(&d.0, "n0").unwrap_err();
            assert!(e.contains(&path.display().to_string()), "{e}");
            assert!(e.contains("top of the usable range"), "{e}");
        }
        let below = Generation::MAX.0 - 1;
        std::fs::write(&path, format!("generation {below}\n")).unwrap();
        assert_eq!(
            StateFile::open(&d.0, "n0").unwrap().generation(),
            Generation(below)
        );
    }

    #[test]
    fn corrupt_files_are_refused_naming_the_file() {
        let d = TempDir::new("corrupt");
        std::fs::create_dir_all(&d.0).unwrap();
        let path = d.0.join("n0.generation");
        for bad in [
            "",
            "generation\n",
            "generation -1\n",
            "generation 12x\n",
            "gen 12\n",
            "generation 1\ngeneration 2\n",
            "generation 99999999999999999999999\n",
            "\u{0}\u{0}\u{0}",
        ] {
            std::fs::write(&path, bad).unwrap();
            let e = StateFile::open(&d.0, "n0").unwrap_err();
            assert!(e.contains(&path.display().to_string()), "{bad:?}: {e}");
            assert!(e.contains("corrupt"), "{bad:?}: {e}");
        }
        std::fs::write(&path, "x".repeat(5000)).unwrap();
        let e = StateFile::open(&d.0, "n0").unwrap_err();
        assert!(e.contains("holds 5000 bytes, more than the 4096"), "{e}");
        // Without the trailing newline it is still read.
        std::fs::write(&path, "generation 3").unwrap();
        assert_eq!(
            StateFile::open(&d.0, "n0").unwrap().generation(),
            Generation(3)
        );
    }

    #[test]
    fn unreadable_files_are_refused_naming_the_file() {
        let d = TempDir::new("unreadable");
        std::fs::create_dir_all(&d.0).unwrap();
        // A directory where the file should be cannot be read (even by root).
        let path = d.0.join("n0.generation");
        std::fs::create_dir_all(&path).unwrap();
        let e = StateFile::open(&d.0, "n0").unwrap_err();
        assert!(e.contains("cannot read state file"), "{e}");
        assert!(e.contains(&path.display().to_string()), "{e}");
        // And a store that cannot replace it fails, naming it.
        let d2 = TempDir::new("unwritable");
        let mut s = StateFile::open(&d2.0, "n0").unwrap();
        std::fs::create_dir_all(d2.0.join("n0.generation").join("x")).unwrap();
        let e = s.store(Generation(1)).unwrap_err();
        assert!(e.contains("cannot write state file"), "{e}");
        assert_eq!(s.generation(), Generation(0));
    }

    #[test]
    fn the_state_dir_is_created_private_and_a_shared_one_is_refused() {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        let d = TempDir::new("private");
        StateFile::open(&d.0, "n0").unwrap();
        assert_eq!(std::fs::metadata(&d.0).unwrap().mode() & 0o777, 0o700);
        std::fs::set_permissions(&d.0, std::fs::Permissions::from_mode(0o777)).unwrap();
        let e = StateFile::open(&d.0, "n0").unwrap_err();
        assert!(
            e.contains(&format!(
                "refusing state directory {}: it has mode 0777: group or others may write to it; fix with: chmod go-w {}",
                d.0.display(),
                d.0.display()
            )),
            "{e}"
        );
        std::fs::set_permissions(&d.0, std::fs::Permissions::from_mode(0o755)).unwrap();
        StateFile::open(&d.0, "n0").unwrap();
        if !root_or_skip("a state directory owned by another user") {
            return;
        }
        std::os::unix::fs::chown(&d.0, Some(65534), Some(65534)).unwrap();
        let e = StateFile::open(&d.0, "n0").unwrap_err();
        assert!(
            e.contains(&format!(
                "refusing state directory {}: it is owned by uid 65534, not by the daemon's user (uid 0); fix with: chown 0 {}",
                d.0.display(),
                d.0.display()
            )),
            "{e}"
        );
    }

    #[test]
    fn a_link_planted_at_the_temporary_file_is_not_written_through() {
        let d = TempDir::new("tmplink");
        let mut s = StateFile::open(&d.0, "n0").unwrap();
        let victim = d.0.join("victim");
        std::fs::write(&victim, "precious\n").unwrap();
        let tmp = d.0.join(".n0.generation.tmp");
        std::os::unix::fs::symlink(&victim, &tmp).unwrap();
        let e = s.store(Generation(3)).unwrap_err();
        assert!(
            e.contains(&format!(
                "temporary file {} already exists and is a symbolic link; refusing to write through it",
                tmp.display()
            )),
            "{e}"
        );
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious\n");
        assert_eq!(s.generation(), Generation(0));
        // A dangling link too.
        std::fs::remove_file(&victim).unwrap();
        assert!(s.store(Generation(3)).is_err());
        assert!(!victim.exists());
        // A regular file left by a crash is replaced.
        std::fs::remove_file(&tmp).unwrap();
        std::fs::write(&tmp, "generation 1").unwrap();
        s.store(Generation(3)).unwrap();
        assert_eq!(
            StateFile::open(&d.0, "n0").unwrap().generation(),
            Generation(3)
        );
        assert!(!tmp.exists());
    }

    #[test]
    fn a_fifo_or_a_link_as_the_state_file_is_refused_without_hanging() {
        let d = TempDir::new("fifo");
        std::fs::create_dir_all(&d.0).unwrap();
        let path = d.0.join("n0.generation");
        let made = std::process::Command::new("mkfifo").arg(&path).status();
        assert!(made.is_ok_and(|s| s.success()), "mkfifo");
        let e = StateFile::open(&d.0, "n0").unwrap_err();
        assert!(
            e.contains(&format!(
                "cannot read state file {}: it is a FIFO, not a regular file",
                path.display()
            )),
            "{e}"
        );
        std::fs::remove_file(&path).unwrap();
        let real = d.0.join("elsewhere");
        std::fs::write(&real, "generation 9\n").unwrap();
        std::os::unix::fs::symlink(&real, &path).unwrap();
        let e = StateFile::open(&d.0, "n0").unwrap_err();
        assert!(e.contains("symbolic link"), "{e}");
    }

    #[test]
    fn a_state_dir_that_is_a_file_is_an_error() {
        let d = TempDir::new("notadir");
        std::fs::create_dir_all(&d.0).unwrap();
        let f = d.0.join("file");
        std::fs::write(&f, "x").unwrap();
        let e = StateFile::open(&f, "n0").unwrap_err();
        assert!(e.contains("cannot create state directory"), "{e}");
    }
}
