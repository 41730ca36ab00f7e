//! Packaging: the completions and man pages `vigil` generates from its clap
//! definitions, and (with `CI=true` or `VIGIL_TEST_PACKAGE=1`) the .deb that
//! `scripts/package` builds.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const VIGIL: &str = env!("CARGO_BIN_EXE_vigil");

fn run(cmd: &mut Command) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn stdout(cmd: &mut Command) -> String {
    String::from_utf8(run(cmd).stdout).expect("utf-8 output")
}

/// The visible subcommands, as `vigil --help` lists them.
fn subcommands() -> Vec<String> {
    let help = stdout(Command::new(VIGIL).arg("--help"));
    let names: Vec<String> = help
        .lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        .filter(|l| l.starts_with("  ") && !l.starts_with("   "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| *n != "help")
        .map(String::from)
        .collect();
    assert!(
        names.len() >= 10 && names.iter().any(|n| n == "daemon"),
        "could not read the subcommands from --help: {names:?}\n{help}"
    );
    names
}

fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("packaging-{name}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

fn ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

fn have(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

#[test]
fn bash_completions_parse_and_name_every_subcommand() {
    let bash = stdout(Command::new(VIGIL).args(["completions", "bash"]));
    let dir = scratch("bash");
    let file = dir.join("vigil.bash");
    std::fs::write(&file, &bash).expect("write completions");
    run(Command::new("bash").arg("-n").arg(&file));
    for sub in subcommands() {
        assert!(
            bash.contains(&format!("vigil,{sub})")),
            "bash completions do not complete `vigil {sub}`"
        );
    }
}

#[test]
fn zsh_and_fish_completions_are_generated() {
    for shell in ["zsh", "fish"] {
        let out = stdout(Command::new(VIGIL).args(["completions", shell]));
        assert!(
            out.contains("vigil") && out.contains("lltstat") && out.len() > 1000,
            "{shell} completions look empty:\n{out}"
        );
    }
    let bad = Command::new(VIGIL)
        .args(["completions", "tcsh"])
        .output()
        .expect("run vigil");
    assert_eq!(
        bad.status.code(),
        Some(2),
        "an unknown shell is a usage error"
    );
}

/// A page formats without a warning, with groff (as `man` would) or mandoc.
fn check_page(page: &Path) -> Result<(), String> {
    let out = if have("groff") {
        Command::new("groff")
            // -k: preconv, as man-db runs it (clap's help text has UTF-8 in it).
            // Every warning except `break` ("cannot adjust line": a long metric
            // name in a narrow column is set ragged, which is layout, not an error).
            .args(["-k", "-man", "-Tutf8", "-z", "-ww", "-Wbreak"])
            .arg(page)
            .output()
    } else {
        Command::new("mandoc")
            .args(["-Tlint", "-Wwarning"])
            .arg(page)
            .output()
    }
    .map_err(|e| e.to_string())?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    if out.status.success() && stderr.trim().is_empty() && stdout.trim().is_empty() {
        Ok(())
    } else {
        Err(format!(
            "{}: {}{stderr}{stdout}",
            page.display(),
            out.status
        ))
    }
}

#[test]
fn every_subcommand_has_a_man_page_and_every_page_formats() {
    let dir = scratch("man");
    let listed = stdout(Command::new(VIGIL).arg("man").arg(&dir));
    let mut expected = vec!["vigil.8".to_string(), "vigil-cluster.toml.5".to_string()];
    expected.extend(subcommands().iter().map(|s| format!("vigil-{s}.8")));
    expected.push("vigil-config-check.8".into());
    for page in &expected {
        assert!(dir.join(page).is_file(), "no page {page}; wrote:\n{listed}");
        assert!(
            listed.contains(page.as_str()),
            "{page} not listed:\n{listed}"
        );
    }
    assert!(
        !dir.join("vigil-guarded-service.8").exists() && !dir.join("vigil-man.8").exists(),
        "hidden commands get no page"
    );
    let config = std::fs::read_to_string(dir.join("vigil-cluster.toml.5")).expect("page");
    for part in [
        ".TH VIGIL\\-CLUSTER.TOML 5",
        ".SH TABLES",
        ".SS Rotating the key",
        ".nf",
    ] {
        assert!(config.contains(part), "vigil-cluster.toml.5 lacks {part}");
    }
    assert!(config.is_ascii(), "the config page is plain ASCII roff");

    if !have("groff") && !have("mandoc") {
        assert!(
            !ci(),
            "CI: neither groff nor mandoc is installed (.ci/run installs groff-base)"
        );
        println!("skipped formatting the pages: neither groff nor mandoc is installed");
        return;
    }
    let mut failures = Vec::new();
    let mut pages: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("read dir")
        .map(|e| e.expect("dir entry").path())
        .collect();
    pages.sort();
    for page in &pages {
        if let Err(e) = check_page(page) {
            failures.push(e);
        }
    }
    assert!(
        failures.is_empty(),
        "pages with warnings:\n{}",
        failures.join("\n")
    );
}

/// `scripts/package` builds the release binary, so this runs in CI or on request.
#[test]
fn the_deb_installs_a_stripped_binary_its_links_pages_and_unit() {
    if !ci() && std::env::var("VIGIL_TEST_PACKAGE").as_deref() != Ok("1") {
        println!("skipped: set VIGIL_TEST_PACKAGE=1 (or CI=true) to build the release .deb");
        return;
    }
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let out = scratch("deb");
    let report = stdout(
        Command::new(repo.join("scripts/package"))
            .arg("--out")
            .arg(&out),
    );
    println!("{report}");
    let version = env!("CARGO_PKG_VERSION");
    let arch = stdout(Command::new("dpkg").arg("--print-architecture"));
    let deb = out.join(format!("vigil_{version}_{}.deb", arch.trim()));
    let dbgdeb = out.join(format!("vigil-dbgsym_{version}_{}.deb", arch.trim()));
    assert!(deb.is_file() && dbgdeb.is_file(), "{report}");

    // Owners, modes and links, as dpkg will install them.
    let listing = stdout(Command::new("dpkg-deb").arg("-c").arg(&deb));
    let entry = |path: &str| -> String {
        listing
            .lines()
            .find(|l| l.ends_with(&format!(" ./{path}")) || l.contains(&format!(" ./{path} -> ")))
            .unwrap_or_else(|| panic!("{path} not in the package:\n{listing}"))
            .to_string()
    };
    for line in listing.lines() {
        assert!(line.contains(" root/root "), "not owned by root: {line}");
    }
    assert!(entry("usr/bin/vigil").starts_with("-rwxr-xr-x "));
    for link in ["lltstat", "gabconfig", "fenceadm"] {
        let l = entry(&format!("usr/bin/{link}"));
        assert!(l.starts_with('l') && l.ends_with(" -> vigil"), "{l}");
    }
    for file in [
        "lib/systemd/system/vigil@.service",
        "lib/systemd/system/vigil-witness.service",
        "usr/lib/tmpfiles.d/vigil.conf",
        "usr/share/man/man8/vigil.8.gz",
        "usr/share/man/man8/vigil-daemon.8.gz",
        "usr/share/man/man8/vigil-lltstat.8.gz",
        "usr/share/man/man5/vigil-cluster.toml.5.gz",
        "usr/share/bash-completion/completions/vigil",
        "usr/share/zsh/vendor-completions/_vigil",
        "usr/share/fish/vendor_completions.d/vigil.fish",
        "usr/share/doc/vigil/examples/cluster.toml",
        "usr/share/doc/vigil/examples/witness.toml",
        "usr/share/doc/vigil/copyright",
    ] {
        assert!(entry(file).starts_with("-rw-r--r-- "), "{}", entry(file));
    }
    assert!(entry("etc/vigil/").starts_with("drwxr-xr-x "));
    assert!(
        !listing.contains("./etc/vigil/cluster.toml"),
        "the config is the operator's"
    );
    for sub in subcommands() {
        entry(&format!("usr/share/man/man8/vigil-{sub}.8.gz"));
    }

    // The control files: no conffiles, a postinst making the directories.
    let control = out.join("control");
    run(Command::new("dpkg-deb").arg("-e").arg(&deb).arg(&control));
    assert!(!control.join("conffiles").exists());
    let postinst = std::fs::read_to_string(control.join("postinst")).expect("postinst");
    assert!(postinst.contains("install -d -m 0700 -o root -g root /var/lib/vigil"));
    assert!(postinst.contains("/run/vigil"));
    let fields = stdout(Command::new("dpkg-deb").arg("-f").arg(&deb));
    assert!(fields.contains("Package: vigil\n") && fields.contains("Depends: libc6"));

    // The packaged binary runs, under its own name and a link's; it is stripped and
    // its debug info is in the dbgsym package under its build ID.
    let root = out.join("root");
    run(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&root));
    run(Command::new("dpkg-deb").arg("-x").arg(&dbgdeb).arg(&root));
    let bin = root.join("usr/bin/vigil");
    let v = stdout(Command::new(&bin).arg("--version"));
    assert_eq!(v.trim(), format!("vigil {version}"));
    let lltstat = stdout(Command::new(root.join("usr/bin/lltstat")).arg("--help"));
    assert!(lltstat.contains("lltstat"), "{lltstat}");
    let sections = stdout(Command::new("readelf").arg("-S").arg(&bin));
    assert!(
        !sections.contains(".debug_info"),
        "the binary is not stripped"
    );
    assert!(sections.contains(".gnu_debuglink"));
    let notes = stdout(Command::new("readelf").arg("-n").arg(&bin));
    let id = notes
        .lines()
        .find_map(|l| l.trim().strip_prefix("Build ID: "))
        .expect("a build ID");
    let debug = root.join(format!(
        "usr/lib/debug/.build-id/{}/{}.debug",
        &id[..2],
        &id[2..]
    ));
    let debug_sections = stdout(Command::new("readelf").arg("-S").arg(&debug));
    assert!(
        debug_sections.contains(".debug_line"),
        "no line tables in {}",
        debug.display()
    );
}
