//! The layering rules: a crate's normal and build dependencies reach, not
//! even transitively, none of the crates its layer forbids. Today one crate
//! has a rule: the `slipway` library carries no KVM, no VMM loader, no CLI
//! parser and no log subscriber, so an embedder who wants the backend
//! compiles none of them.
//!
//! Each crate is resolved the way `cargo build -p CRATE` resolves it
//! (`cargo tree -p CRATE -e normal,build` on the host target), not in the
//! workspace-wide resolution the purity check reads from `cargo metadata`.
//! Workspace-wide, features are unified across every member: once the
//! reference VMM turns on the device crate's KVM feature, `slipway -> device
//! crate -> kvm-ioctls` would count although an embedder who depends on
//! `slipway` alone never builds it. The question here is what that embedder
//! compiles, so a feature counts when the crate's own dependency chain turns
//! it on, and not when another member or a dev-dependency does.

use std::fmt;
use std::path::Path;

use crate::depgraph::{self, Graph, lib_path};
use crate::process::{capture, cargo_command, host_triple};

/// A crate, or a family of crates by name prefix, that a rule forbids.
#[derive(Debug, PartialEq, Eq)]
pub enum Forbidden {
    /// The crate of exactly this name.
    Crate(&'static str),
    /// Every crate whose name starts with this.
    Prefix(&'static str),
}

impl Forbidden {
    fn matches(&self, name: &str) -> bool {
        match self {
            Forbidden::Crate(forbidden) => name == *forbidden,
            Forbidden::Prefix(prefix) => name.starts_with(prefix),
        }
    }
}

impl fmt::Display for Forbidden {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Forbidden::Crate(name) => f.write_str(name),
            Forbidden::Prefix(prefix) => write!(f, "{prefix}*"),
        }
    }
}

/// What one workspace crate may not depend on, and why.
#[derive(Debug, PartialEq, Eq)]
pub struct Rule {
    pub krate: &'static str,
    pub forbidden: &'static [Forbidden],
    pub why: &'static str,
}

impl Rule {
    fn forbids(&self, name: &str) -> bool {
        self.forbidden
            .iter()
            .any(|forbidden| forbidden.matches(name))
    }

    /// The forbidden crates as a sentence lists them: `a, b or c`.
    pub fn forbidden_list(&self) -> String {
        let names: Vec<String> = self.forbidden.iter().map(ToString::to_string).collect();
        depgraph::listed(&names, "or")
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} may not depend on {} (not even transitively, through normal or build \
             dependencies): {}",
            self.krate,
            self.forbidden_list(),
            self.why
        )
    }
}

/// The rules `verify` checks.
pub const RULES: &[Rule] = &[Rule {
    krate: "slipway",
    forbidden: &[
        Forbidden::Prefix("kvm-"),
        Forbidden::Crate("linux-loader"),
        Forbidden::Crate("acpi_tables"),
        Forbidden::Crate("clap"),
        Forbidden::Crate("argh"),
        Forbidden::Crate("lexopt"),
        Forbidden::Crate("pico-args"),
        Forbidden::Crate("gumdrop"),
        Forbidden::Crate("bpaf"),
        Forbidden::Crate("structopt"),
        Forbidden::Crate("tracing-subscriber"),
    ],
    why: "the library an embedder links holds no KVM, VMM or command-line code",
}];

/// One way in which a crate breaks its rule.
#[derive(Debug, PartialEq, Eq)]
pub enum Problem {
    /// The crate reaches a forbidden crate along this chain of package
    /// names, from the crate to the forbidden one.
    Reaches {
        rule: &'static Rule,
        chain: Vec<String>,
    },
    /// The crate a rule names is not a library in the workspace.
    Missing { rule: &'static Rule },
}

impl Problem {
    /// The rule broken.
    pub fn rule(&self) -> &'static Rule {
        match self {
            Problem::Reaches { rule, .. } | Problem::Missing { rule } => rule,
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::Reaches { chain, .. } => f.write_str(&chain.join(" -> ")),
            Problem::Missing { rule } => {
                write!(f, "{}: no such library in the workspace", rule.krate)
            }
        }
    }
}

/// Checks `rules` on the workspace at `root`: one `cargo tree` per crate.
pub fn check_workspace(root: &Path, rules: &'static [Rule]) -> Result<Vec<Problem>, String> {
    let host = host_triple()?;
    let metadata = depgraph::metadata(root, &["--no-deps"])?;
    let mut problems = Vec::new();
    for rule in rules {
        if lib_path(&metadata, rule.krate).is_none() {
            problems.push(Problem::Missing { rule });
            continue;
        }
        let tree = capture(
            cargo_command(&[
                "tree",
                "-p",
                rule.krate,
                "-e",
                "normal,build",
                "--target",
                &host,
                "--prefix",
                "depth",
                "-f",
                "{p}",
            ])
            .current_dir(root),
        )?;
        problems.extend(tree_problems(rule, &tree)?);
    }
    Ok(problems)
}

/// The chains by which `rule`'s crate reaches a crate it forbids, shortest
/// first, one per forbidden crate reached, in `tree` (the output of `cargo
/// tree --prefix depth -f '{p}'` for that crate). Pure.
pub fn tree_problems(rule: &'static Rule, tree: &str) -> Result<Vec<Problem>, String> {
    let graph = Graph::from_tree(tree)?;
    let Some(root) = graph.root(rule.krate) else {
        return Err(format!(
            "`cargo tree` printed no {} at its root",
            rule.krate
        ));
    };
    Ok(graph
        .forbidden_chains(root, |name| rule.forbids(name))
        .into_iter()
        .map(|chain| Problem::Reaches { rule, chain })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scratch::Scratch;

    const SLIPWAY: &Rule = &RULES[0];

    fn chains(problems: &[Problem]) -> Vec<String> {
        problems.iter().map(ToString::to_string).collect()
    }

    fn tree_chains(tree: &str) -> Vec<String> {
        match tree_problems(SLIPWAY, tree) {
            Ok(problems) => chains(&problems),
            Err(error) => vec![format!("error: {error}")],
        }
    }

    #[test]
    fn rule_names_every_forbidden_crate() {
        let text = SLIPWAY.to_string();
        for name in [
            "kvm-*",
            "linux-loader",
            "acpi_tables",
            "clap",
            "argh",
            "lexopt",
            "pico-args",
            "gumdrop",
            "bpaf",
            "structopt",
            "or tracing-subscriber",
        ] {
            assert!(text.contains(name), "{name} missing from {text}");
        }
        assert!(text.starts_with("slipway may not depend on kvm-*, linux-loader,"));
    }

    #[test]
    fn forbidden_names() {
        for name in ["kvm-ioctls", "kvm-bindings", "clap", "tracing-subscriber"] {
            assert!(SLIPWAY.forbids(name), "{name}");
        }
        for name in ["kvm", "clap_lex", "tracing", "linux-loader-x", "vm-memory"] {
            assert!(!SLIPWAY.forbids(name), "{name}");
        }
    }

    #[test]
    fn clean_tree_has_no_problems() {
        let tree = "0slipway v0.1.0 (/w/crates/slipway)\n1tracing v0.1.44\n\
                    2tracing-core v0.1.36\n1libc v0.2.191\n";
        assert!(tree_chains(tree).is_empty());
    }

    #[test]
    fn tree_with_forbidden_crates_reports_each_by_its_shortest_chain() {
        let tree = "0slipway v0.1.0 (/w/crates/slipway)\n\
                    1virtio-net-kvm v0.1.0 (/w/crates/virtio-net-kvm)\n\
                    2kvm-ioctls v0.25.1\n\
                    3kvm-bindings v0.14.2\n\
                    1kvm-bindings v0.14.2 (*)\n\
                    1clap v4.5.0\n";
        assert_eq!(
            tree_chains(tree),
            [
                "slipway -> kvm-bindings",
                "slipway -> clap",
                "slipway -> virtio-net-kvm -> kvm-ioctls",
            ]
        );
    }

    #[test]
    fn tree_of_another_crate_is_an_error() {
        assert!(tree_chains("0nat-core v0.1.0\n")[0].starts_with("error:"));
    }

    /// A workspace of path crates, each `(name, manifest tail)`, with an
    /// empty library each. The names of forbidden crates are local stand-ins:
    /// the check goes by name, and nothing is fetched.
    fn workspace(crates: &[(&str, &str)]) -> Scratch {
        let scratch = Scratch::new("layering");
        let members: Vec<String> = crates.iter().map(|(name, _)| format!("{name:?}")).collect();
        scratch.write(
            "Cargo.toml",
            &format!(
                "[workspace]\nresolver = \"3\"\nmembers = [{}]\n",
                members.join(", ")
            ),
        );
        for (name, tail) in crates {
            scratch.write(
                &format!("{name}/Cargo.toml"),
                &format!(
                    "[package]\nname = \"{name}\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\
                     {tail}\n"
                ),
            );
            scratch.write(&format!("{name}/src/lib.rs"), "");
        }
        scratch
    }

    fn check(scratch: &Scratch) -> Vec<String> {
        match check_workspace(scratch.path(), RULES) {
            Ok(problems) => chains(&problems),
            Err(error) => vec![format!("error: {error}")],
        }
    }

    const KVM: (&str, &str) = ("kvm-ioctls", "");

    #[test]
    fn clean_workspace_passes() {
        let scratch = workspace(&[
            (
                "slipway",
                "[dependencies]\nhelper = { path = \"../helper\" }",
            ),
            ("helper", ""),
            KVM,
        ]);
        assert_eq!(check(&scratch), Vec::<String>::new());
    }

    #[test]
    fn direct_normal_dependency_is_reported() {
        let scratch = workspace(&[
            (
                "slipway",
                "[dependencies]\nkvm-ioctls = { path = \"../kvm-ioctls\" }",
            ),
            KVM,
        ]);
        assert_eq!(check(&scratch), ["slipway -> kvm-ioctls"]);
    }

    #[test]
    fn transitive_dependency_is_reported_with_its_chain() {
        let scratch = workspace(&[
            (
                "slipway",
                "[dependencies]\nhelper = { path = \"../helper\" }",
            ),
            (
                "helper",
                "[dependencies]\nkvm-ioctls = { path = \"../kvm-ioctls\" }",
            ),
            KVM,
        ]);
        assert_eq!(check(&scratch), ["slipway -> helper -> kvm-ioctls"]);
    }

    #[test]
    fn build_dependency_is_reported() {
        let scratch = workspace(&[
            (
                "slipway",
                "[build-dependencies]\nlinux-loader = { path = \"../linux-loader\" }",
            ),
            ("linux-loader", ""),
        ]);
        assert_eq!(check(&scratch), ["slipway -> linux-loader"]);
    }

    /// `helper`'s `kvm` feature pulls in kvm-ioctls.
    const HELPER_WITH_KVM_FEATURE: (&str, &str) = (
        "helper",
        "[dependencies]\nkvm-ioctls = { path = \"../kvm-ioctls\", optional = true }\n\
         [features]\nkvm = [\"dep:kvm-ioctls\"]",
    );

    #[test]
    fn dev_dependencies_are_ignored_and_turn_on_no_feature() {
        let scratch = workspace(&[
            (
                "slipway",
                "[dependencies]\nhelper = { path = \"../helper\" }\n\
                 [dev-dependencies]\nkvm-ioctls = { path = \"../kvm-ioctls\" }\n\
                 helper = { path = \"../helper\", features = [\"kvm\"] }",
            ),
            HELPER_WITH_KVM_FEATURE,
            KVM,
        ]);
        assert_eq!(check(&scratch), Vec::<String>::new());
    }

    #[test]
    fn feature_another_member_turns_on_does_not_count() {
        let scratch = workspace(&[
            (
                "slipway",
                "[dependencies]\nhelper = { path = \"../helper\" }",
            ),
            (
                "vmm",
                "[dependencies]\nhelper = { path = \"../helper\", features = [\"kvm\"] }",
            ),
            HELPER_WITH_KVM_FEATURE,
            KVM,
        ]);
        assert_eq!(check(&scratch), Vec::<String>::new());
    }

    #[test]
    fn feature_the_crate_turns_on_counts() {
        let scratch = workspace(&[
            (
                "slipway",
                "[dependencies]\nhelper = { path = \"../helper\", features = [\"kvm\"] }",
            ),
            HELPER_WITH_KVM_FEATURE,
            KVM,
        ]);
        assert_eq!(check(&scratch), ["slipway -> helper -> kvm-ioctls"]);
    }

    #[test]
    fn missing_crate_is_a_problem() {
        let scratch = workspace(&[("helper", "")]);
        assert_eq!(
            check(&scratch),
            ["slipway: no such library in the workspace"]
        );
    }

    /// The real workspace obeys the rules, so plain `cargo test` catches a
    /// violation as well as `cargo xtask verify` does.
    #[test]
    fn real_workspace_keeps_its_layers() {
        let problems = check_workspace(&crate::process::workspace_root(), RULES)
            .unwrap_or_else(|error| panic!("layering check could not run: {error}"));
        let listed: Vec<String> = problems.iter().map(ToString::to_string).collect();
        assert!(
            listed.is_empty(),
            "layering violations:\n{}",
            listed.join("\n")
        );
    }
}
