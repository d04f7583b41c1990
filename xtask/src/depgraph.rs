//! The dependency graph the layering checks walk, read from `cargo metadata`
//! or from `cargo tree`, and the one walk they share: the shortest chain from
//! a crate to each forbidden crate it reaches.
//!
//! Only normal and build dependencies are edges: a dev-dependency never
//! reaches the library a user links.

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::process::{capture, cargo_command};

/// `items` as a sentence lists them: `a, b and c` for the conjunction `and`.
pub fn listed<S: AsRef<str>>(items: &[S], conjunction: &str) -> String {
    let items: Vec<&str> = items.iter().map(AsRef::as_ref).collect();
    match items.split_last() {
        Some((last, [])) => (*last).to_owned(),
        Some((last, rest)) => format!("{} {conjunction} {last}", rest.join(", ")),
        None => String::new(),
    }
}

/// `cargo metadata --format-version 1` on the workspace at `root`, with
/// `extra` arguments (`--no-deps`, `--filter-platform TRIPLE`).
pub fn metadata(root: &Path, extra: &[&str]) -> Result<Value, String> {
    let mut args = vec!["metadata", "--format-version", "1"];
    args.extend_from_slice(extra);
    let json = capture(cargo_command(&args).current_dir(root))?;
    serde_json::from_str(&json)
        .map_err(|error| format!("`cargo metadata` printed invalid JSON: {error}"))
}

pub fn packages(metadata: &Value) -> impl Iterator<Item = &Value> {
    metadata["packages"].as_array().into_iter().flatten()
}

pub fn workspace_members(metadata: &Value) -> Vec<&str> {
    metadata["workspace_members"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect()
}

/// The package directories of the workspace members.
pub fn member_dirs(metadata: &Value) -> Vec<PathBuf> {
    let members = workspace_members(metadata);
    packages(metadata)
        .filter(|package| {
            package["id"]
                .as_str()
                .is_some_and(|id| members.contains(&id))
        })
        .filter_map(|package| {
            let manifest = Path::new(package["manifest_path"].as_str()?);
            Some(manifest.parent()?.to_path_buf())
        })
        .collect()
}

/// The source root of the library target of the workspace member `krate`,
/// or `None` when there is no such member or it has no library.
pub fn lib_path(metadata: &Value, krate: &str) -> Option<PathBuf> {
    let members = workspace_members(metadata);
    let package = packages(metadata).find(|package| {
        package["name"] == krate
            && package["id"]
                .as_str()
                .is_some_and(|id| members.contains(&id))
    })?;
    package["targets"]
        .as_array()?
        .iter()
        .find(|target| {
            target["kind"]
                .as_array()
                .is_some_and(|kinds| kinds.iter().any(|kind| kind == "lib"))
        })
        .and_then(|target| target["src_path"].as_str())
        .map(PathBuf::from)
}

/// Packages and their normal and build dependencies.
pub struct Graph<'a> {
    names: HashMap<&'a str, &'a str>,
    /// Package id → ids of its normal and build dependencies.
    deps: HashMap<&'a str, Vec<&'a str>>,
    /// The packages a walk may start from.
    roots: Vec<&'a str>,
}

impl<'a> Graph<'a> {
    /// The resolve graph of `cargo metadata`: every workspace member is a
    /// root, and features are those of the whole workspace built together.
    pub fn from_metadata(metadata: &'a Value) -> Result<Graph<'a>, String> {
        let mut names = HashMap::new();
        for package in packages(metadata) {
            let (Some(id), Some(name)) = (package["id"].as_str(), package["name"].as_str()) else {
                return Err("`cargo metadata`: a package without id or name".to_owned());
            };
            names.insert(id, name);
        }
        let nodes = metadata["resolve"]["nodes"]
            .as_array()
            .ok_or("`cargo metadata` has no resolve graph")?;
        let mut deps = HashMap::new();
        for node in nodes {
            let id = node["id"]
                .as_str()
                .ok_or("`cargo metadata`: a resolve node without id")?;
            let linked = node["deps"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|dep| is_linked(dep))
                .filter_map(|dep| dep["pkg"].as_str())
                .collect();
            deps.insert(id, linked);
        }
        Ok(Graph {
            names,
            deps,
            roots: workspace_members(metadata),
        })
    }

    /// The output of `cargo tree -p CRATE -e normal,build --prefix depth -f
    /// '{p}'`: the one package at depth 0 is the root, and features are those
    /// that building that package alone turns on. A package printed again
    /// (marked `(*)`) is not expanded a second time; its edges come from its
    /// first appearance.
    pub fn from_tree(tree: &'a str) -> Result<Graph<'a>, String> {
        let mut names = HashMap::new();
        let mut deps: HashMap<&str, Vec<&str>> = HashMap::new();
        let mut roots = Vec::new();
        // The package last seen at each depth: the parent of the next line
        // one level deeper.
        let mut path: Vec<&str> = Vec::new();
        for line in tree.lines().filter(|line| !line.trim().is_empty()) {
            let (depth, id) = tree_line(line)?;
            if depth > path.len() {
                return Err(format!("`cargo tree`: line `{line}` skips a level"));
            }
            path.truncate(depth);
            let name = id.split_whitespace().next().unwrap_or(id);
            names.insert(id, name);
            deps.entry(id).or_default();
            match path.last() {
                None => roots.push(id),
                Some(parent) => {
                    let edges = deps.entry(parent).or_default();
                    if !edges.contains(&id) {
                        edges.push(id);
                    }
                }
            }
            path.push(id);
        }
        if roots.len() != 1 {
            return Err(format!(
                "`cargo tree` printed {} root packages, expected one",
                roots.len()
            ));
        }
        Ok(Graph { names, deps, roots })
    }

    /// The root package named `name`.
    pub fn root(&self, name: &str) -> Option<&'a str> {
        self.roots
            .iter()
            .copied()
            .find(|id| self.names.get(id) == Some(&name))
    }

    /// For each package reached from `root` whose name is `forbidden`, the
    /// chain of package names from `root` to it: shortest chains first, one
    /// per forbidden package, none through another forbidden package.
    pub fn forbidden_chains(
        &self,
        root: &'a str,
        forbidden: impl Fn(&str) -> bool,
    ) -> Vec<Vec<String>> {
        // Breadth-first, so each chain found is a shortest one.
        let mut parent: HashMap<&str, &str> = HashMap::new();
        let mut queue = VecDeque::from([root]);
        let mut chains = Vec::new();
        while let Some(id) = queue.pop_front() {
            for &dep in self.deps.get(id).map_or(&[][..], Vec::as_slice) {
                if dep == root || parent.contains_key(dep) {
                    continue;
                }
                parent.insert(dep, id);
                if forbidden(self.name(dep)) {
                    chains.push(self.chain(root, dep, &parent));
                } else {
                    queue.push_back(dep);
                }
            }
        }
        chains
    }

    fn name(&self, id: &'a str) -> &'a str {
        self.names.get(id).copied().unwrap_or(id)
    }

    fn chain(
        &self,
        root: &'a str,
        last: &'a str,
        parent: &HashMap<&'a str, &'a str>,
    ) -> Vec<String> {
        let mut chain = vec![self.name(last).to_owned()];
        let mut at = last;
        while at != root {
            let Some(&up) = parent.get(at) else { break };
            chain.push(self.name(up).to_owned());
            at = up;
        }
        chain.reverse();
        chain
    }
}

/// Splits a `--prefix depth` line into its depth and the package as printed,
/// without the `(*)` that marks a repeat.
fn tree_line(line: &str) -> Result<(usize, &str), String> {
    let digits = line.len() - line.trim_start_matches(|c: char| c.is_ascii_digit()).len();
    let depth = line[..digits]
        .parse()
        .map_err(|_| format!("`cargo tree`: line `{line}` has no depth"))?;
    let package = line[digits..].trim();
    let package = package.strip_suffix("(*)").map_or(package, str::trim_end);
    if package.is_empty() {
        return Err(format!("`cargo tree`: line `{line}` names no package"));
    }
    Ok((depth, package))
}

/// Whether a resolve edge is a normal or build dependency (on the filtered
/// platform); dev-only edges are not followed.
fn is_linked(dep: &Value) -> bool {
    dep["dep_kinds"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|kind| matches!(kind["kind"].as_str(), None | Some("build")))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn chains(tree: &str, root: &str) -> Vec<String> {
        let graph = Graph::from_tree(tree).unwrap();
        let root = graph.root(root).unwrap();
        graph
            .forbidden_chains(root, |name| name.starts_with("kvm-"))
            .iter()
            .map(|chain| chain.join(" -> "))
            .collect()
    }

    #[test]
    fn tree_edges_come_from_indentation_and_repeats_keep_their_first_edges() {
        let tree = "0slipway v0.1.0 (/w/crates/slipway)\n\
                    1a v1.0.0\n\
                    2kvm-bindings v0.14.2\n\
                    1b v1.0.0\n\
                    2a v1.0.0 (*)\n\
                    1kvm-ioctls v0.25.1\n";
        assert_eq!(
            chains(tree, "slipway"),
            ["slipway -> kvm-ioctls", "slipway -> a -> kvm-bindings"]
        );
    }

    #[test]
    fn tree_proc_macro_marker_is_part_of_the_package_not_its_name() {
        let tree = "0slipway v0.1.0 (/w)\n1m v1.0.0 (proc-macro)\n2kvm-x v1.0.0\n\
                    1n v1.0.0\n2m v1.0.0 (proc-macro) (*)\n";
        assert_eq!(chains(tree, "slipway"), ["slipway -> m -> kvm-x"]);
    }

    #[test]
    fn malformed_trees_are_errors() {
        for tree in [
            "",
            "slipway v0.1.0\n",
            "0slipway v0.1.0\n2a v1.0.0\n",
            "0slipway v0.1.0\n1\n",
            "0a v1.0.0\n\n0b v1.0.0\n",
        ] {
            assert!(Graph::from_tree(tree).is_err(), "{tree:?}");
        }
    }

    #[test]
    fn lists_read_as_sentences() {
        assert_eq!(listed(&["a"], "and"), "a");
        assert_eq!(listed(&["a", "b"], "and"), "a and b");
        assert_eq!(listed(&["a", "b", "c"], "or"), "a, b or c");
        assert_eq!(listed::<&str>(&[], "or"), "");
    }

    #[test]
    fn tree_root_is_found_by_name_only() {
        let graph = Graph::from_tree("0slipway v0.1.0 (/w)\n1a v1.0.0\n").unwrap();
        assert!(graph.root("slipway").is_some());
        assert!(graph.root("a").is_none());
    }
}
