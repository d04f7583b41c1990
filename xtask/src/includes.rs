//! The include rules: a source file brings in another file only from inside
//! its own crate's directory, and library sources bring in no test file.
//! Code shared across crates goes through a crate dependency instead, so
//! every crate builds from its own directory (as `cargo package` needs) and
//! test code stays out of libraries.
//!
//! An include is a `#[path = "..."]` attribute, directly or inside
//! `cfg_attr`, or an `include!`, `include_str!` or `include_bytes!` of a
//! string literal, written on one line. Both resolve against the directory of
//! the file that holds them; a `#[path]` inside an inline `mod` block
//! resolves deeper in truth, so the check can only err on the strict side.
//! Lines that start with `//` are comments and are skipped.
//!
//! "Library sources" are the files under a crate's `src/`; a test file is
//! one under a `tests` directory of the crate that holds it. The files
//! checked are every `.rs` file in every workspace member's directory,
//! except under `target` and inside a nested package (a directory with its
//! own `Cargo.toml`), which is checked as its own crate if it is a member.

use std::fmt;
use std::path::{Component, Path, PathBuf};

use crate::depgraph;

/// The rule, as printed when it is broken.
pub const RULE: &str = "a #[path] or include!/include_str!/include_bytes! may not reach outside \
                        the directory of the crate that holds it, and no file under a crate's \
                        src/ may include a file under a tests/ directory";

/// One include as written in a source file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Include {
    /// The file that holds it, shown relative to the workspace root.
    pub file: PathBuf,
    /// Its 1-based line.
    pub line: usize,
    /// `#[path]` or the macro's name.
    pub how: &'static str,
    /// The path as written.
    pub written: String,
    /// The path it resolves to, shown relative to the workspace root.
    pub target: PathBuf,
}

/// One way in which an include breaks the rule.
#[derive(Debug, PartialEq, Eq)]
pub enum Problem {
    /// The include reaches outside its crate's directory (shown relative to
    /// the workspace root).
    OutsideCrate { include: Include, krate: PathBuf },
    /// A file under `src/` includes a file under a `tests` directory.
    TestFileInSource { include: Include },
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (include, broken) = match self {
            Problem::OutsideCrate { include, krate } => {
                (include, format!("outside {}", krate.display()))
            }
            Problem::TestFileInSource { include } => {
                (include, "a test file, from library source".to_owned())
            }
        };
        write!(
            f,
            "{}:{}: {} \"{}\" reaches {}, {broken}",
            include.file.display(),
            include.line,
            include.how,
            include.written,
            include.target.display(),
        )
    }
}

/// What the check looked at, for the message when it passes.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Report {
    pub crates: usize,
    pub files: usize,
    pub includes: usize,
    pub problems: Vec<Problem>,
}

/// Checks every workspace member of the workspace at `root`.
pub fn check_workspace(root: &Path) -> Result<Report, String> {
    let metadata = depgraph::metadata(root, &["--no-deps"])?;
    check_crates(root, &depgraph::member_dirs(&metadata))
}

/// Checks the crates in `crate_dirs`; paths in problems are shown relative
/// to `root`.
pub fn check_crates(root: &Path, crate_dirs: &[PathBuf]) -> Result<Report, String> {
    let mut report = Report {
        crates: crate_dirs.len(),
        ..Report::default()
    };
    for crate_dir in crate_dirs {
        let crate_dir = &normalize(crate_dir);
        let mut files = Vec::new();
        rust_files(crate_dir, crate_dir, &mut files)?;
        for file in files {
            let source = std::fs::read_to_string(&file)
                .map_err(|error| format!("cannot read {}: {error}", file.display()))?;
            report.files += 1;
            for (line, how, written) in includes_in(&source) {
                report.includes += 1;
                let target = normalize(&file.parent().unwrap_or(crate_dir).join(&written));
                let include = Include {
                    file: shown(root, &file),
                    line,
                    how,
                    written,
                    target: shown(root, &target),
                };
                report
                    .problems
                    .extend(judge(root, crate_dir, &file, &target, &include));
            }
        }
    }
    Ok(report)
}

/// The problems of one include of `target` in `file` of the crate at
/// `crate_dir`: none, one, or both.
fn judge(
    root: &Path,
    crate_dir: &Path,
    file: &Path,
    target: &Path,
    include: &Include,
) -> Vec<Problem> {
    let mut problems = Vec::new();
    if !target.starts_with(crate_dir) {
        problems.push(Problem::OutsideCrate {
            include: include.clone(),
            krate: shown(root, crate_dir),
        });
    }
    if file.starts_with(crate_dir.join("src")) && is_test_file(target) {
        problems.push(Problem::TestFileInSource {
            include: include.clone(),
        });
    }
    problems
}

/// Whether `path` lies under a `tests` directory of the package that holds
/// it (the nearest ancestor with a `Cargo.toml`, or the whole path when none
/// has one).
fn is_test_file(path: &Path) -> bool {
    let package = path
        .ancestors()
        .skip(1)
        .find(|dir| dir.join("Cargo.toml").is_file());
    let inside = package.map_or(path, |package| path.strip_prefix(package).unwrap_or(path));
    inside
        .parent()
        .into_iter()
        .flat_map(Path::components)
        .any(|component| component == Component::Normal("tests".as_ref()))
}

/// Every `.rs` file under `dir`, sorted, skipping `target` directories and
/// nested packages.
fn rust_files(crate_dir: &Path, dir: &Path, files: &mut Vec<PathBuf>) -> Result<(), String> {
    let entries = std::fs::read_dir(dir)
        .map_err(|error| format!("cannot list {}: {error}", dir.display()))?;
    let mut paths: Vec<PathBuf> = entries
        .map(|entry| entry.map(|entry| entry.path()))
        .collect::<Result<_, _>>()
        .map_err(|error| format!("cannot list {}: {error}", dir.display()))?;
    paths.sort();
    for path in paths {
        if path.is_dir() {
            let nested = path.join("Cargo.toml").is_file() && path != crate_dir;
            if !nested && path.file_name() != Some("target".as_ref()) {
                rust_files(crate_dir, &path, files)?;
            }
        } else if path.extension() == Some("rs".as_ref()) {
            files.push(path);
        }
    }
    Ok(())
}

/// The includes in `source`: `(line, how, path as written)`.
pub fn includes_in(source: &str) -> Vec<(usize, &'static str, String)> {
    let mut found = Vec::new();
    for (index, line) in source.lines().enumerate() {
        let trimmed = line.trim_start();
        if trimmed.starts_with("//") {
            continue;
        }
        if trimmed.starts_with("#[") || trimmed.starts_with("#![") {
            for written in path_attributes(trimmed) {
                found.push((index + 1, "#[path]", written));
            }
        }
        for how in ["include!", "include_str!", "include_bytes!"] {
            for written in macro_arguments(line, how) {
                found.push((index + 1, how, written));
            }
        }
    }
    found
}

/// The literals of `path = "..."` in an attribute line, where `path` is a
/// whole word.
fn path_attributes(line: &str) -> Vec<String> {
    let mut found = Vec::new();
    for (at, _) in line.match_indices("path") {
        let before = line[..at].chars().next_back();
        if !before.is_some_and(|c| matches!(c, '[' | '(' | ',') || c.is_whitespace()) {
            continue;
        }
        let rest = line[at + "path".len()..].trim_start();
        if let Some(literal) = rest.strip_prefix('=').and_then(leading_literal) {
            found.push(literal);
        }
    }
    found
}

/// The literal arguments of `how(...)` in a line, where `how` is not the
/// tail of a longer name.
fn macro_arguments(line: &str, how: &str) -> Vec<String> {
    let mut found = Vec::new();
    for (at, _) in line.match_indices(how) {
        let before = line[..at].chars().next_back();
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':') {
            continue;
        }
        let rest = line[at + how.len()..].trim_start();
        if let Some(literal) = rest.strip_prefix('(').and_then(leading_literal) {
            found.push(literal);
        }
    }
    found
}

/// The contents of the plain string literal `text` starts with (after
/// whitespace); `None` for anything else.
fn leading_literal(text: &str) -> Option<String> {
    let rest = text.trim_start().strip_prefix('"')?;
    let end = rest.find(['"', '\\'])?;
    rest[end..].starts_with('"').then(|| rest[..end].to_owned())
}

/// `path` with `.` and `..` resolved lexically.
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::CurDir => {}
            Component::ParentDir => {
                if !out.pop() {
                    out.push("..");
                }
            }
            other => out.push(other),
        }
    }
    out
}

/// `path` relative to `root` when it lies under it.
fn shown(root: &Path, path: &Path) -> PathBuf {
    path.strip_prefix(normalize(root))
        .map_or_else(|_| path.to_path_buf(), Path::to_path_buf)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scratch::Scratch;

    fn written(source: &str) -> Vec<String> {
        includes_in(source)
            .into_iter()
            .map(|(line, how, path)| format!("{line} {how} {path}"))
            .collect()
    }

    #[test]
    fn path_attributes_and_include_macros_are_found() {
        let source = "#[path = \"a.rs\"]\nmod a;\n\
                      #[cfg_attr(test, path=\"b.rs\")]\nmod b;\n\
                      const C: &str = include_str!( \"c.txt\" );\n\
                      include!(\"d.rs\");\n\
                      static E: &[u8] = include_bytes!(\"e.bin\");\n";
        assert_eq!(
            written(source),
            [
                "1 #[path] a.rs",
                "3 #[path] b.rs",
                "5 include_str! c.txt",
                "6 include! d.rs",
                "7 include_bytes! e.bin",
            ]
        );
    }

    #[test]
    fn comments_strings_and_other_names_are_not_includes() {
        let source = "// #[path = \"a.rs\"]\n\
                      //! the VM tests include it with `#[path]`\n\
                      let s = \"#[path = \\\"b.rs\\\"]\";\n\
                      #[doc(alias = \"classpath\")]\n\
                      #[xpath = \"c.rs\"]\n\
                      my_include!(\"d.rs\");\n\
                      include_str!(concat!(env!(\"OUT_DIR\"), \"/e\"));\n\
                      #[path = \"f\\\"g.rs\"]\n";
        assert_eq!(written(source), Vec::<String>::new());
    }

    #[test]
    fn normalize_resolves_dots_lexically() {
        assert_eq!(
            normalize(Path::new("/w/crates/a/src/../../b/./tests/x.rs")),
            Path::new("/w/crates/b/tests/x.rs")
        );
        assert_eq!(normalize(Path::new("a/../../b")), Path::new("../b"));
    }

    /// Two crates, `a` and `b`, with one include of each kind that breaks a
    /// rule and one of each that keeps to it.
    fn fixture() -> Scratch {
        let scratch = Scratch::new("includes");
        scratch.write("Cargo.toml", "[workspace]\nmembers = [\"a\", \"b\"]\n");
        for krate in ["a", "b"] {
            scratch.write(&format!("{krate}/Cargo.toml"), "[package]\n");
        }
        scratch.write(
            "a/src/lib.rs",
            "#[path = \"../../b/tests/common/mod.rs\"]\nmod shared;\n\
             #[path = \"inner/x.rs\"]\nmod x;\n\
             #[cfg_attr(test, path = \"../tests/support.rs\")]\nmod support;\n\
             const DATA: &str = include_str!(\"../../b/data.txt\");\n\
             const OWN: &str = include_str!(\"../data.txt\");\n\
             // #[path = \"../../b/commented.rs\"]\n",
        );
        scratch.write("a/src/inner/x.rs", "");
        scratch.write(
            "a/src/bin/tool/main.rs",
            "#[path = \"../common/mod.rs\"]\nmod c;\n",
        );
        scratch.write(
            "a/tests/it.rs",
            "#[path = \"common/mod.rs\"]\nmod common;\n\
             #[path = \"../../b/tests/common/mod.rs\"]\nmod shared;\n",
        );
        scratch.write(
            "a/benches/b.rs",
            "#[path = \"../tests/common/mod.rs\"]\nmod c;\n",
        );
        // Neither a build directory nor a nested package is part of `a`.
        scratch.write("a/target/debug/x.rs", "include!(\"../../../../b/x.rs\");\n");
        scratch.write("a/nested/Cargo.toml", "[package]\n");
        scratch.write("a/nested/src/lib.rs", "include!(\"../../../b/x.rs\");\n");
        scratch.write("b/tests/common/mod.rs", "");
        scratch
    }

    #[test]
    fn includes_outside_the_crate_and_of_test_files_from_src_are_reported() {
        let scratch = fixture();
        let root = scratch.path();
        let report = check_crates(root, &[root.join("a"), root.join("b")]);
        let report = match report {
            Ok(report) => report,
            Err(error) => panic!("include check could not run: {error}"),
        };
        let problems: Vec<String> = report.problems.iter().map(ToString::to_string).collect();
        assert_eq!(
            problems,
            [
                "a/src/lib.rs:1: #[path] \"../../b/tests/common/mod.rs\" reaches \
                 b/tests/common/mod.rs, outside a",
                "a/src/lib.rs:1: #[path] \"../../b/tests/common/mod.rs\" reaches \
                 b/tests/common/mod.rs, a test file, from library source",
                "a/src/lib.rs:5: #[path] \"../tests/support.rs\" reaches a/tests/support.rs, \
                 a test file, from library source",
                "a/src/lib.rs:7: include_str! \"../../b/data.txt\" reaches b/data.txt, \
                 outside a",
                "a/tests/it.rs:3: #[path] \"../../b/tests/common/mod.rs\" reaches \
                 b/tests/common/mod.rs, outside a",
            ]
        );
        assert_eq!((report.crates, report.files), (2, 6));
        assert_eq!(report.includes, 9);
    }

    #[test]
    fn test_files_are_those_under_a_tests_directory_of_their_package() {
        let scratch = Scratch::new("includes");
        scratch.write("tests/w/a/Cargo.toml", "[package]\n");
        let root = scratch.path().join("tests/w");
        assert!(is_test_file(&root.join("a/tests/common/mod.rs")));
        assert!(is_test_file(&root.join("a/src/tests/mod.rs")));
        // The scratch directory's own `tests` lies above the package.
        assert!(!is_test_file(&root.join("a/src/lib.rs")));
        assert!(!is_test_file(&root.join("a/tests.rs")));
    }

    /// No include of the real workspace leaves its crate, so plain `cargo
    /// test` catches one as well as `cargo xtask verify` does.
    #[test]
    fn real_workspace_includes_stay_in_their_crates() {
        let report = check_workspace(&crate::process::workspace_root())
            .unwrap_or_else(|error| panic!("include check could not run: {error}"));
        let listed: Vec<String> = report.problems.iter().map(ToString::to_string).collect();
        assert!(
            listed.is_empty(),
            "includes leaving their crate:\n{}",
            listed.join("\n")
        );
        assert!(report.crates >= 10, "members found: {}", report.crates);
    }
}
