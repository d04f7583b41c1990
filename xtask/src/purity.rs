//! The purity rule of the layered design: the pure crates depend, directly or
//! transitively, on no OS-facing crate, and their `lib.rs` forbids `unsafe`.
//!
//! The dependency graph comes from `cargo metadata`, filtered to the host
//! target. Only normal and build dependencies are followed: a dev-dependency
//! (proptest pulls in libc) never reaches the library a user links. The graph
//! is the workspace-wide resolution, so a feature another crate turns on for
//! a shared dependency counts against the pure crates too; the check errs on
//! the strict side.

use std::fmt;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::depgraph::{self, Graph, lib_path};
use crate::process::host_triple;

/// The crates that must stay pure.
pub const PURE_CRATES: &[&str] = &["nat-core", "flow-table", "frontdesk", "guest-frame"];

/// The pure crates as a sentence lists them: `a, b and c`.
pub fn pure_crates_listed() -> String {
    depgraph::listed(PURE_CRATES, "and")
}

/// The rule, as printed when it is broken.
pub fn rule() -> String {
    format!(
        "{} may not depend on libc, rustix, nix, socket2, mio or kvm-* (not even \
         transitively) and must start with #![forbid(unsafe_code)]",
        pure_crates_listed()
    )
}

/// Whether a package of this name talks to the operating system or KVM.
pub fn is_os_facing(name: &str) -> bool {
    matches!(name, "libc" | "rustix" | "nix" | "socket2" | "mio") || name.starts_with("kvm-")
}

/// One way in which a pure crate breaks the rule.
#[derive(Debug, PartialEq, Eq)]
pub enum Problem {
    /// The pure crate reaches an OS-facing crate along this chain of package
    /// names, from the pure crate to the OS-facing one.
    ReachesOsCrate(Vec<String>),
    /// The pure crate's library root has no `#![forbid(unsafe_code)]`.
    AllowsUnsafe { krate: String, lib_rs: PathBuf },
    /// The pure crate is not a workspace member, or has no library target.
    Missing { krate: String },
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::ReachesOsCrate(chain) => write!(f, "{}", chain.join(" -> ")),
            Problem::AllowsUnsafe { krate, lib_rs } => write!(
                f,
                "{krate}: {} lacks #![forbid(unsafe_code)]",
                lib_rs.display()
            ),
            Problem::Missing { krate } => {
                write!(f, "{krate}: no such library in the workspace")
            }
        }
    }
}

/// Runs `cargo metadata` on the workspace at `root` and checks every pure
/// crate: its dependency graph and its `lib.rs`.
pub fn check_workspace(root: &Path) -> Result<Vec<Problem>, String> {
    let host = host_triple()?;
    let metadata = depgraph::metadata(root, &["--filter-platform", &host])?;
    let mut problems = Vec::new();
    for krate in PURE_CRATES {
        let found = dependency_problems(&metadata, krate)?;
        let missing = found
            .iter()
            .any(|problem| matches!(problem, Problem::Missing { .. }));
        problems.extend(found);
        if !missing {
            problems.extend(unsafe_problems(&metadata, krate)?);
        }
    }
    Ok(problems)
}

/// The chains by which `krate` reaches an OS-facing crate, shortest first,
/// one per OS-facing crate reached. Pure: it reads only `metadata`.
pub fn dependency_problems(metadata: &Value, krate: &str) -> Result<Vec<Problem>, String> {
    let graph = Graph::from_metadata(metadata)?;
    let Some(root) = graph.root(krate) else {
        return Ok(vec![Problem::Missing {
            krate: krate.to_owned(),
        }]);
    };
    Ok(graph
        .forbidden_chains(root, is_os_facing)
        .into_iter()
        .map(Problem::ReachesOsCrate)
        .collect())
}

/// Whether `krate`'s library root forbids unsafe code. Reads the file that
/// `metadata` names as the library target's source.
fn unsafe_problems(metadata: &Value, krate: &str) -> Result<Vec<Problem>, String> {
    let Some(lib_rs) = lib_path(metadata, krate) else {
        return Ok(vec![Problem::Missing {
            krate: krate.to_owned(),
        }]);
    };
    let source = std::fs::read_to_string(&lib_rs)
        .map_err(|error| format!("cannot read {}: {error}", lib_rs.display()))?;
    if forbids_unsafe_code(&source) {
        Ok(Vec::new())
    } else {
        Ok(vec![Problem::AllowsUnsafe {
            krate: krate.to_owned(),
            lib_rs,
        }])
    }
}

/// Whether a crate root carries `#![forbid(unsafe_code)]`, alone or among
/// other lints in the same attribute.
pub fn forbids_unsafe_code(source: &str) -> bool {
    source.lines().any(|line| {
        let line: String = line.chars().filter(|c| !c.is_whitespace()).collect();
        line.strip_prefix("#![forbid(")
            .and_then(|rest| rest.strip_suffix(")]"))
            .is_some_and(|lints| lints.split(',').any(|lint| lint == "unsafe_code"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn id(name: &str) -> String {
        format!("registry+https://example.invalid/index#{name}@1.0.0")
    }

    /// Metadata for a workspace whose members are `nat-core` and
    /// `flow-table`, with the given edges `(from, to, kind)`.
    fn metadata(edges: &[(&str, &str, Option<&str>)]) -> Value {
        let mut names: Vec<&str> = vec!["nat-core", "flow-table"];
        for (from, to, _) in edges {
            for name in [from, to] {
                if !names.contains(name) {
                    names.push(name);
                }
            }
        }
        let packages: Vec<Value> = names
            .iter()
            .map(|name| json!({ "id": id(name), "name": name, "targets": [] }))
            .collect();
        let nodes: Vec<Value> = names
            .iter()
            .map(|name| {
                let deps: Vec<Value> = edges
                    .iter()
                    .filter(|(from, _, _)| from == name)
                    .map(|(_, to, kind)| {
                        json!({
                            "name": to.replace('-', "_"),
                            "pkg": id(to),
                            "dep_kinds": [{ "kind": kind, "target": null }],
                        })
                    })
                    .collect();
                json!({ "id": id(name), "deps": deps })
            })
            .collect();
        json!({
            "packages": packages,
            "workspace_members": [id("nat-core"), id("flow-table")],
            "resolve": { "nodes": nodes, "root": null },
        })
    }

    fn chains(metadata: &Value, krate: &str) -> Vec<String> {
        match dependency_problems(metadata, krate) {
            Ok(problems) => problems.iter().map(ToString::to_string).collect(),
            Err(error) => vec![format!("error: {error}")],
        }
    }

    #[test]
    fn clean_graph_has_no_problems() {
        let metadata = metadata(&[
            ("flow-table", "thiserror", None),
            ("thiserror", "thiserror-impl", None),
            ("nat-core", "thiserror", None),
        ]);
        assert!(chains(&metadata, "flow-table").is_empty());
        assert!(chains(&metadata, "nat-core").is_empty());
    }

    #[test]
    fn transitive_os_dependency_is_reported_with_its_chain() {
        let metadata = metadata(&[
            ("flow-table", "thiserror", None),
            ("flow-table", "foo", None),
            ("foo", "bar", None),
            ("bar", "libc", None),
        ]);
        assert_eq!(
            chains(&metadata, "flow-table"),
            ["flow-table -> foo -> bar -> libc"]
        );
        assert!(chains(&metadata, "nat-core").is_empty());
    }

    #[test]
    fn direct_kvm_dependency_is_reported() {
        let metadata = metadata(&[("nat-core", "kvm-ioctls", None)]);
        assert_eq!(chains(&metadata, "nat-core"), ["nat-core -> kvm-ioctls"]);
    }

    #[test]
    fn build_dependencies_are_followed() {
        let metadata = metadata(&[("nat-core", "cc", Some("build")), ("cc", "socket2", None)]);
        assert_eq!(chains(&metadata, "nat-core"), ["nat-core -> cc -> socket2"]);
    }

    #[test]
    fn dev_dependencies_are_not_followed() {
        let metadata = metadata(&[
            ("flow-table", "proptest", Some("dev")),
            ("proptest", "rustix", None),
        ]);
        assert!(chains(&metadata, "flow-table").is_empty());
    }

    #[test]
    fn each_os_crate_is_reported_once_by_its_shortest_chain() {
        let metadata = metadata(&[
            ("flow-table", "a", None),
            ("a", "b", None),
            ("b", "mio", None),
            ("flow-table", "mio", None),
            ("a", "nix", None),
        ]);
        assert_eq!(
            chains(&metadata, "flow-table"),
            ["flow-table -> mio", "flow-table -> a -> nix"]
        );
    }

    #[test]
    fn cycles_through_the_root_terminate() {
        let metadata = metadata(&[("nat-core", "a", None), ("a", "nat-core", None)]);
        assert!(chains(&metadata, "nat-core").is_empty());
    }

    #[test]
    fn missing_pure_crate_is_a_problem() {
        let metadata = json!({
            "packages": [],
            "workspace_members": [],
            "resolve": { "nodes": [], "root": null },
        });
        assert_eq!(
            chains(&metadata, "nat-core"),
            ["nat-core: no such library in the workspace"]
        );
    }

    #[test]
    fn metadata_without_resolve_is_an_error() {
        let metadata = json!({ "packages": [], "workspace_members": [], "resolve": null });
        assert!(dependency_problems(&metadata, "nat-core").is_err());
    }

    #[test]
    fn os_facing_names() {
        for name in [
            "libc",
            "rustix",
            "nix",
            "socket2",
            "mio",
            "kvm-ioctls",
            "kvm-bindings",
        ] {
            assert!(is_os_facing(name), "{name}");
        }
        for name in ["thiserror", "smoltcp", "libcrux", "mio-extras", "kvmx"] {
            assert!(!is_os_facing(name), "{name}");
        }
    }

    #[test]
    fn rule_names_the_pure_crates_and_the_os_facing_ones() {
        assert!(rule().starts_with(
            "nat-core, flow-table, frontdesk and guest-frame may not depend on libc, rustix,"
        ));
        assert!(rule().contains("or kvm-* (not even transitively)"));
    }

    #[test]
    fn forbid_unsafe_code_is_recognised() {
        assert!(forbids_unsafe_code("//! Docs.\n#![forbid(unsafe_code)]\n"));
        assert!(forbids_unsafe_code("#![forbid(missing_docs, unsafe_code)]"));
        assert!(!forbids_unsafe_code("#![deny(unsafe_code)]"));
        assert!(!forbids_unsafe_code("// #![forbid(unsafe_code)]"));
        assert!(!forbids_unsafe_code("#![forbid(unsafe_op_in_unsafe_fn)]"));
    }

    /// The real workspace obeys the rule, so plain `cargo test` catches a
    /// violation as well as `cargo xtask verify` does.
    #[test]
    fn real_workspace_is_pure() {
        let problems = check_workspace(&crate::process::workspace_root());
        match problems {
            Ok(problems) => assert!(
                problems.is_empty(),
                "purity violations:\n{}",
                problems
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("\n")
            ),
            Err(error) => panic!("purity check could not run: {error}"),
        }
    }
}
