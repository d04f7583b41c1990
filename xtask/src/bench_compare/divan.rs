//! Reading divan's result tables.
//!
//! divan 0.1 prints its results only as a tree-shaped text table on stdout
//! (no machine-readable format): a header line naming the bench binary and
//! the columns, then one line per group and per benchmark, indented by
//! three characters per level, with `│`-separated cells. Throughput
//! counters add a second line under a benchmark whose first cell has no
//! name. This module takes the median time of every benchmark and names it
//! by its path in the tree, `binary/function/arg`.

/// The median time of one benchmark, in nanoseconds.
#[derive(Clone, Debug, PartialEq)]
pub struct Median {
    /// `binary/function[/arg]`, as in the tree.
    pub name: String,
    /// Nanoseconds.
    pub nanos: f64,
}

/// Characters that draw the tree in front of a name.
const TREE_CHARS: [char; 5] = ['│', '├', '╰', '─', ' '];

/// The column of the median among the `│`-separated cells of a row (the
/// first cell holds the name and the fastest time).
const MEDIAN_CELL: usize = 2;

/// Every benchmark's median in divan's output, in order. Lines that are not
/// part of a table are ignored, so stdout can be passed as it is.
pub fn parse(output: &str) -> Vec<Median> {
    let mut medians = Vec::new();
    // The names of the enclosing levels: the binary, then groups.
    let mut path: Vec<String> = Vec::new();
    let mut in_table = false;
    for line in output.lines() {
        if let Some(binary) = header_name(line) {
            path = vec![binary.to_owned()];
            in_table = true;
            continue;
        }
        if !in_table {
            continue;
        }
        if line.trim().is_empty() {
            in_table = false;
            continue;
        }
        let Some(row) = Row::parse(line) else {
            continue;
        };
        // Depth 1 is a child of the binary.
        path.truncate(row.depth.max(1));
        match row.median {
            Some(nanos) => {
                let mut name = path.join("/");
                name.push('/');
                name.push_str(&row.name);
                medians.push(Median { name, nanos });
            }
            None => path.push(row.name),
        }
    }
    medians
}

/// The binary's name when `line` is a table header.
fn header_name(line: &str) -> Option<&str> {
    let (name, columns) = line.split_once(char::is_whitespace)?;
    let is_header = columns.contains("fastest") && columns.contains("median");
    (is_header && !name.is_empty() && !name.starts_with(TREE_CHARS)).then_some(name)
}

/// One named row of the tree: a group (no times) or a benchmark.
struct Row {
    depth: usize,
    name: String,
    median: Option<f64>,
}

impl Row {
    fn parse(line: &str) -> Option<Row> {
        let rest = line.trim_start_matches(TREE_CHARS);
        let indent = line[..line.len() - rest.len()].chars().count();
        let mut cells = rest.split('│');
        let first: Vec<&str> = cells.next()?.split_whitespace().collect();
        let cells: Vec<&str> = cells.map(str::trim).collect();
        let depth = indent / 3;
        match first.as_slice() {
            // A group: a name and empty cells.
            [name] if cells.iter().all(|c| c.is_empty()) => Some(Row {
                depth,
                name: (*name).to_owned(),
                median: None,
            }),
            // A benchmark: its name, then the fastest time.
            [name @ .., value, unit] if !name.is_empty() && nanos(value, unit).is_some() => {
                let median = cells.get(MEDIAN_CELL - 1).and_then(|cell| {
                    let (value, unit) = cell.split_once(' ')?;
                    nanos(value, unit.trim())
                })?;
                Some(Row {
                    depth,
                    name: name.join(" "),
                    median: Some(median),
                })
            }
            // Counter rows, ignored benchmarks, anything else.
            _ => None,
        }
    }
}

/// A time as divan prints it (`25.93 ns`, `1.6 µs`), in nanoseconds.
fn nanos(value: &str, unit: &str) -> Option<f64> {
    let scale = match unit {
        "ps" => 1e-3,
        "ns" => 1.0,
        // divan writes the micro sign; accept the Greek mu and ASCII too.
        "µs" | "μs" | "us" => 1e3,
        "ms" => 1e6,
        "s" => 1e9,
        "m" => 60e9,
        "h" => 3600e9,
        "d" => 86_400e9,
        _ => return None,
    };
    let value: f64 = value.parse().ok()?;
    value.is_finite().then_some(value * scale)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn medians(output: &str) -> Vec<(String, f64)> {
        parse(output)
            .into_iter()
            .map(|m| (m.name, m.nanos))
            .collect()
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() <= 1e-9 * b.abs().max(1.0)
    }

    #[test]
    fn nested_args_and_counter_rows_of_real_output() {
        let got = medians(include_str!("testdata/divan-frontdesk.txt"));
        let want = [
            ("frontdesk/classify_tcp_v4/64", 26.34),
            ("frontdesk/classify_tcp_v4/1460", 62.58),
            ("frontdesk/classify_tcp_v4/65000", 1646.0),
            ("frontdesk/write_tcp_headers_to_guest/64", 31.04),
            ("frontdesk/write_tcp_headers_to_guest/1460", 61.69),
            ("frontdesk/write_tcp_headers_to_guest/65000", 1609.0),
        ];
        assert_eq!(got.len(), want.len(), "{got:?}");
        for ((name, nanos), (want_name, want_nanos)) in got.iter().zip(want) {
            assert_eq!(name, want_name);
            assert!(close(*nanos, want_nanos), "{name}: {nanos} != {want_nanos}");
        }
    }

    #[test]
    fn leaf_beside_groups_keeps_its_level() {
        let got = medians(include_str!("testdata/divan-nat.txt"));
        let names: Vec<&str> = got.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "nat/translate_inbound_forward",
                "nat/translate_outbound_allowed/0",
                "nat/translate_outbound_allowed/1000",
                "nat/translate_outbound_denied/1000",
            ]
        );
        assert!(close(got[0].1, 11.97));
        assert!(close(got[3].1, 23.65));
    }

    #[test]
    fn several_tables_and_cargo_noise_between_them() {
        let output = format!(
            "     Running benches/frontdesk.rs (target/release/deps/frontdesk-1)\n{}\n\
             Timer precision: 17 ns\n{}",
            include_str!("testdata/divan-frontdesk.txt"),
            include_str!("testdata/divan-nat.txt")
        );
        let got = medians(&output);
        assert_eq!(got.len(), 10);
        assert!(got[..6].iter().all(|(n, _)| n.starts_with("frontdesk/")));
        assert!(got[6..].iter().all(|(n, _)| n.starts_with("nat/")));
    }

    #[test]
    fn units_scale_to_nanoseconds() {
        assert_eq!(nanos("250", "ps"), Some(0.25));
        assert_eq!(nanos("1.5", "µs"), Some(1500.0));
        assert_eq!(nanos("1.5", "μs"), Some(1500.0));
        assert_eq!(nanos("2", "ms"), Some(2e6));
        assert_eq!(nanos("3", "s"), Some(3e9));
        assert_eq!(nanos("4.5", "GB/s"), None);
        assert_eq!(nanos("x", "ns"), None);
    }

    #[test]
    fn text_without_a_table_gives_nothing() {
        assert!(parse("error: no benchmarks\n├─ lonely 3 ns │ 3 ns │ 3 ns\n").is_empty());
        assert!(parse("").is_empty());
    }
}
