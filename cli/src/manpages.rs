//! `vigil completions SHELL` and `vigil man DIR`: shell completions and manual pages
//! generated from the clap definitions (so they say what `--help` says), and the
//! configuration file's page, `vigil-cluster.toml(5)`, converted from `docs/config.md`.
//! `scripts/package` runs both with the binary it packages.

use clap::{Args, ValueEnum};
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::exit;

/// `vigil completions`.
#[derive(Args, Debug)]
pub struct CompletionsArgs {
    /// The shell to print completions for.
    #[arg(value_enum)]
    shell: Shell,
}

/// The shells `vigil completions` knows.
#[derive(ValueEnum, Clone, Copy, Debug)]
enum Shell {
    Bash,
    Zsh,
    Fish,
}

/// `vigil man`.
#[derive(Args, Debug)]
pub struct ManArgs {
    /// The directory to write the pages to (created if missing): vigil.8, one
    /// vigil-COMMAND.8 per subcommand and vigil-cluster.toml.5.
    dir: PathBuf,
}

/// The configuration file's documentation, the source of `vigil-cluster.toml(5)`.
const CONFIG_MD: &str = include_str!("../../docs/config.md");

/// Print the completions for one shell to stdout.
pub fn completions(args: &CompletionsArgs, mut cmd: clap::Command) -> u8 {
    let mut out = std::io::stdout().lock();
    match args.shell {
        Shell::Bash => {
            clap_complete::generate(clap_complete::Shell::Bash, &mut cmd, "vigil", &mut out)
        }
        Shell::Zsh => {
            clap_complete::generate(clap_complete::Shell::Zsh, &mut cmd, "vigil", &mut out)
        }
        Shell::Fish => {
            clap_complete::generate(clap_complete::Shell::Fish, &mut cmd, "vigil", &mut out)
        }
    }
    match out.flush() {
        Ok(()) => exit::OK,
        Err(e) => {
            eprintln!("vigil completions: {e}");
            exit::FAILURE
        }
    }
}

/// Write every page to `args.dir`, printing each file's path.
pub fn man(args: &ManArgs, cmd: clap::Command) -> u8 {
    match write_pages(&args.dir, cmd) {
        Ok(files) => {
            for f in files {
                println!("{}", f.display());
            }
            exit::OK
        }
        Err(e) => {
            eprintln!("vigil man: {}: {e}", args.dir.display());
            exit::FAILURE
        }
    }
}

fn write_pages(dir: &Path, cmd: clap::Command) -> std::io::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir)?;
    let mut cmd = cmd.disable_help_subcommand(true);
    cmd.build();
    let mut files = Vec::new();
    command_pages(&cmd, dir, &mut files)?;
    let path = dir.join("vigil-cluster.toml.5");
    std::fs::write(&path, config_page(CONFIG_MD))?;
    files.push(path);
    Ok(files)
}

/// The page of `cmd` (section 8), then those of its visible subcommands, at any depth
/// (`vigil-config-check.8`).
fn command_pages(cmd: &clap::Command, dir: &Path, files: &mut Vec<PathBuf>) -> std::io::Result<()> {
    let page = clap_mangen::Man::new(cmd.clone())
        .section("8")
        .source(format!("vigil {}", env!("CARGO_PKG_VERSION")))
        .manual("System Administration");
    files.push(page.generate_to(dir)?);
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        command_pages(sub, dir, files)?;
    }
    Ok(())
}

/// `docs/config.md` as a section-5 page. The conversion knows what that file uses:
/// headings, paragraphs, fenced and indented code, bullet and numbered lists (with
/// code and paragraphs inside items), tables (as tagged paragraphs) and `code` spans.
fn config_page(md: &str) -> String {
    let mut out = String::new();
    out.push_str(&format!(
        ".TH VIGIL\\-CLUSTER.TOML 5 \"\" \"vigil {}\" \"File Formats\"\n",
        env!("CARGO_PKG_VERSION")
    ));
    out.push_str(".SH NAME\nvigil\\-cluster.toml \\- the cluster configuration file of vigil\n");
    out.push_str(".SH SYNOPSIS\n/etc/vigil/cluster.toml\n.SH DESCRIPTION\n");
    markdown_to_roff(md, &mut out);
    out.push_str(".SH SEE ALSO\n\\fBvigil\\fR(8), \\fBvigil\\-daemon\\fR(8), \\fBvigil\\-config\\fR(8), \\fBvigil\\-keygen\\fR(8); /usr/share/doc/vigil/examples/cluster.toml\n");
    out
}

/// The blocks of a markdown text, separated by blank lines; a fenced code block is
/// one block whatever it holds.
fn blocks(md: &str) -> Vec<Vec<&str>> {
    let mut blocks = Vec::new();
    let mut cur: Vec<&str> = Vec::new();
    let mut fenced = false;
    for line in md.lines() {
        if line.trim_start().starts_with("```") {
            if fenced {
                cur.push(line);
                blocks.push(std::mem::take(&mut cur));
            } else {
                if !cur.is_empty() {
                    blocks.push(std::mem::take(&mut cur));
                }
                cur.push(line);
            }
            fenced = !fenced;
        } else if !fenced && line.trim().is_empty() {
            if !cur.is_empty() {
                blocks.push(std::mem::take(&mut cur));
            }
        } else {
            cur.push(line);
        }
    }
    if !cur.is_empty() {
        blocks.push(cur);
    }
    blocks
}

fn indent_of(line: &str) -> usize {
    line.len() - line.trim_start_matches(' ').len()
}

/// The content column of a list item line (`- x`: 2, `12. x`: 4), if it is one.
fn list_item(line: &str) -> Option<(String, usize)> {
    if let Some(rest) = line.strip_prefix("- ") {
        return Some(("\\(bu".into(), line.len() - rest.len()));
    }
    let digits = line.chars().take_while(char::is_ascii_digit).count();
    if digits > 0 && line[digits..].starts_with(". ") {
        return Some((line[..digits + 1].to_string(), digits + 2));
    }
    None
}

fn markdown_to_roff(md: &str, out: &mut String) {
    // The content column and the indentation of the list item we are in, if any.
    let mut list: Option<(usize, usize)> = None;
    for block in blocks(md) {
        let first = block[0];
        let indent = indent_of(first);
        if first.trim_start().starts_with("```") {
            list = None;
            let body = &block[1..block.len().saturating_sub(1)];
            code(body, 0, None, out);
        } else if let Some(h) = first.strip_prefix("# ") {
            // The title: NAME already says it.
            let _ = h;
        } else if let Some(h) = first.strip_prefix("## ") {
            list = None;
            out.push_str(&format!(".SH {}\n", text(&h.to_uppercase())));
        } else if let Some(h) = first.strip_prefix("### ") {
            list = None;
            out.push_str(&format!(".SS {}\n", text(h)));
        } else if first.starts_with('|') {
            list = None;
            table(&block, out);
        } else if indent == 0 && list_item(first).is_some() {
            // One or more items, each with its continuation lines.
            let mut item: Vec<&str> = Vec::new();
            let mut tag = String::new();
            let mut width = 2;
            for line in &block {
                if let Some((t, col)) = list_item(line) {
                    if !item.is_empty() {
                        list_paragraph(&tag, width, &item, out);
                        item.clear();
                    }
                    width = if col == 2 { 2 } else { col + 1 };
                    tag = t;
                    list = Some((col, width));
                    item.push(&line[col..]);
                } else {
                    item.push(line.trim());
                }
            }
            list_paragraph(&tag, width, &item, out);
        } else if let Some((col, width)) = list.filter(|&(col, _)| indent >= col && indent > 0) {
            if indent >= col + 4 {
                code(&block, col + 4, Some(width), out);
            } else {
                list_paragraph("", width, &block, out);
            }
        } else if indent >= 4 {
            list = None;
            code(&block, 4, None, out);
        } else {
            list = None;
            out.push_str(".PP\n");
            out.push_str(&line_start(&text(&join(&block))));
            out.push('\n');
        }
    }
}

fn join(lines: &[&str]) -> String {
    lines.iter().map(|l| l.trim()).collect::<Vec<_>>().join(" ")
}

fn list_paragraph(tag: &str, width: usize, lines: &[&str], out: &mut String) {
    out.push_str(&format!(".IP \"{tag}\" {width}\n"));
    out.push_str(&line_start(&text(&join(lines))));
    out.push('\n');
}

/// A code block, its lines stripped of `strip` columns; inside a list item (indented
/// by `in_list`) it stays within the item's indentation.
fn code(lines: &[&str], strip: usize, in_list: Option<usize>, out: &mut String) {
    match in_list {
        Some(width) => out.push_str(&format!(".IP \"\" {width}\n")),
        None => out.push_str(".PP\n"),
    }
    out.push_str(".RS 4\n.nf\n");
    for line in lines {
        let cut = indent_of(line).min(strip);
        out.push_str(&line_start(&escape(&line[cut..], true)));
        out.push('\n');
    }
    out.push_str(".fi\n.RE\n");
}

/// A table as tagged paragraphs: the first cell is the tag; the others follow, each
/// named by its column's heading when there are more than two columns.
fn table(lines: &[&str], out: &mut String) {
    let rows: Vec<Vec<&str>> = lines
        .iter()
        .map(|l| {
            l.trim()
                .trim_start_matches('|')
                .trim_end_matches('|')
                .split('|')
                .map(str::trim)
                .collect()
        })
        .collect();
    let Some((head, body)) = rows.split_first() else {
        return;
    };
    let body = body.iter().filter(|r| {
        !r.iter()
            .all(|c| c.chars().all(|ch| matches!(ch, '-' | ':' | ' ')))
    });
    out.push_str(".PP\n");
    for row in body {
        let Some((tag, rest)) = row.split_first() else {
            continue;
        };
        out.push_str(&format!(".TP\n{}\n", line_start(&text(tag))));
        for (i, cell) in rest.iter().enumerate() {
            if i > 0 {
                out.push_str(".br\n");
            }
            let cell = text(cell);
            if rest.len() > 1 {
                let name = head.get(i + 1).map(|h| text(h)).unwrap_or_default();
                out.push_str(&format!("{name}: {cell}\n"));
            } else {
                out.push_str(&line_start(&cell));
                out.push('\n');
            }
        }
    }
}

/// Inline markdown to roff: `code` in bold, **strong** in bold, the rest escaped.
fn text(s: &str) -> String {
    let mut out = String::new();
    for (i, part) in s.split('`').enumerate() {
        if i % 2 == 1 {
            out.push_str("\\fB");
            out.push_str(&escape(part, true));
            out.push_str("\\fR");
        } else {
            for (j, p) in part.split("**").enumerate() {
                if j % 2 == 1 {
                    out.push_str(&format!("\\fB{}\\fR", escape(p, false)));
                } else {
                    out.push_str(&escape(p, false));
                }
            }
        }
    }
    out
}

/// Escape roff's special characters; non-ASCII characters become `\[uXXXX]`, so the
/// page is ASCII and needs no input-encoding preprocessor. In code, `-` is a minus
/// (`\-`), so that commands copied from the page work.
fn escape(s: &str, code: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\e"),
            '-' if code => out.push_str("\\-"),
            c if c.is_ascii() => out.push(c),
            c => out.push_str(&format!("\\[u{:04X}]", c as u32)),
        }
    }
    out
}

/// A line that starts with `.` or `'` would be read as a request; `\&` keeps it text.
fn line_start(s: &str) -> String {
    if s.starts_with('.') || s.starts_with('\'') {
        format!("\\&{s}")
    } else {
        s.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headings_paragraphs_code_lists_and_tables_become_roff() {
        let md = "# T\n\nSome `--x` text\nwrapped.\n\n    vigil run -a\n\n## Part\n\n\
                  - one\n  more\n- two:\n\n      code here\n\n  after\n\n\
                  | a | b |\n| --- | --- |\n| `k` | v |\n\n```toml\n.x = 1\n\n```\n";
        let mut out = String::new();
        markdown_to_roff(md, &mut out);
        assert_eq!(
            out,
            ".PP\nSome \\fB\\-\\-x\\fR text wrapped.\n\
             .PP\n.RS 4\n.nf\nvigil run \\-a\n.fi\n.RE\n\
             .SH PART\n\
             .IP \"\\(bu\" 2\none more\n.IP \"\\(bu\" 2\ntwo:\n\
             .IP \"\" 2\n.RS 4\n.nf\ncode here\n.fi\n.RE\n\
             .IP \"\" 2\nafter\n\
             .PP\n.TP\n\\fBk\\fR\nv\n\
             .PP\n.RS 4\n.nf\n\\&.x = 1\n\n.fi\n.RE\n"
        );
    }

    #[test]
    fn non_ascii_is_escaped() {
        assert_eq!(escape("2 × a − b", false), "2 \\[u00D7] a \\[u2212] b");
    }
}
