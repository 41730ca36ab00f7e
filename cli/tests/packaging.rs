//! Packaging: the completions and man pages `vigil` generates from its clap
//! definitions.

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
            .args(["-k", "-man", "-Tutf8", "-z", "-ww"])
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
