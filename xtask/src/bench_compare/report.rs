//! Comparing two trees' measurements and writing the markdown table.
//!
//! Each benchmark has one value per repetition in each tree. The value
//! compared is the median over repetitions; the run-to-run spread of a tree
//! is `(max - min) / median` over its repetitions, and a change is called
//! only when it is larger than the wider of the two trees' spreads: a delta
//! inside the spread is noise, not a regression. Nor is a delta below a
//! floor (`min_change_pct`): two binaries built apart from the same source
//! differ by a few percent in code layout alone, steadily across
//! repetitions, which no run-to-run spread shows.

use std::collections::BTreeMap;
use std::fmt::Write as _;

/// Which way is better for a measurement.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Better {
    /// Times, latencies.
    Lower,
    /// Throughputs, rates.
    Higher,
}

/// One benchmark's values in both trees, one per repetition.
#[derive(Clone, Debug, PartialEq)]
pub struct Series {
    /// How values print: `ns` for times (scaled to µs, ms as they grow),
    /// anything else as is.
    pub unit: String,
    /// Which way is better.
    pub better: Better,
    /// Values of the baseline tree.
    pub baseline: Vec<f64>,
    /// Values of the current tree.
    pub current: Vec<f64>,
}

impl Series {
    /// An empty series of times in nanoseconds, lower better.
    pub fn nanos() -> Self {
        Self::new("ns", Better::Lower)
    }

    /// An empty series.
    pub fn new(unit: &str, better: Better) -> Self {
        Self {
            unit: unit.to_owned(),
            better,
            baseline: Vec::new(),
            current: Vec::new(),
        }
    }
}

/// The verdict on one benchmark.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Better than the baseline by more than the spread.
    Faster,
    /// Worse than the baseline by more than the spread.
    Slower,
    /// The change is within the run-to-run spread.
    Noise,
    /// One repetition only: the spread is unknown, so is the verdict.
    Unknown,
}

impl Verdict {
    fn word(self) -> &'static str {
        match self {
            Verdict::Faster => "faster",
            Verdict::Slower => "slower",
            Verdict::Noise => "noise",
            Verdict::Unknown => "? (1 rep)",
        }
    }
}

/// One row of the table.
#[derive(Clone, Debug, PartialEq)]
pub struct Row {
    /// Median of the baseline's values.
    pub baseline: f64,
    /// Median of the current tree's values.
    pub current: f64,
    /// `(current - baseline) / baseline`, in percent.
    pub delta_pct: f64,
    /// The wider run-to-run spread of the two trees, in percent; `None`
    /// with fewer than two repetitions in a tree.
    pub spread_pct: Option<f64>,
    /// The verdict.
    pub verdict: Verdict,
}

/// The median of `values`; `None` when empty.
pub fn median(values: &[f64]) -> Option<f64> {
    let mut sorted: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
    sorted.sort_by(f64::total_cmp);
    let n = sorted.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(sorted[n / 2]),
        _ => Some(f64::midpoint(sorted[n / 2 - 1], sorted[n / 2])),
    }
}

/// `(max - min) / median` of `values` in percent; `None` with fewer than
/// two values or a zero median.
pub fn spread_pct(values: &[f64]) -> Option<f64> {
    if values.len() < 2 {
        return None;
    }
    let mid = median(values)?;
    let max = values.iter().copied().fold(f64::MIN, f64::max);
    let min = values.iter().copied().fold(f64::MAX, f64::min);
    (mid != 0.0).then(|| (max - min) / mid.abs() * 100.0)
}

/// Compares the two trees' values of one benchmark, calling deltas within
/// the spread or below `min_change_pct` noise; `None` when a tree has no
/// value or the baseline's median is zero.
pub fn compare(series: &Series, min_change_pct: f64) -> Option<Row> {
    let baseline = median(&series.baseline)?;
    let current = median(&series.current)?;
    if baseline == 0.0 {
        return None;
    }
    let delta_pct = (current - baseline) / baseline.abs() * 100.0;
    let spread = match (spread_pct(&series.baseline), spread_pct(&series.current)) {
        (Some(a), Some(b)) => Some(a.max(b)),
        _ => None,
    };
    let improved = match series.better {
        Better::Lower => delta_pct < 0.0,
        Better::Higher => delta_pct > 0.0,
    };
    let verdict = match spread {
        None => Verdict::Unknown,
        Some(spread) if delta_pct.abs() <= spread.max(min_change_pct) => Verdict::Noise,
        Some(_) if improved => Verdict::Faster,
        Some(_) => Verdict::Slower,
    };
    Some(Row {
        baseline,
        current,
        delta_pct,
        spread_pct: spread,
        verdict,
    })
}

/// A value with its unit; nanoseconds scale to µs, ms and s.
pub fn format_value(value: f64, unit: &str) -> String {
    if unit != "ns" {
        return format!("{} {unit}", significant(value));
    }
    let (scaled, unit) = match value.abs() {
        v if v >= 1e9 => (value / 1e9, "s"),
        v if v >= 1e6 => (value / 1e6, "ms"),
        v if v >= 1e3 => (value / 1e3, "µs"),
        _ => (value, "ns"),
    };
    format!("{} {unit}", significant(scaled))
}

/// Four significant digits, without trailing zeros past the point.
fn significant(value: f64) -> String {
    let decimals = match value.abs() {
        v if v >= 1000.0 => 0,
        v if v >= 100.0 => 1,
        v if v >= 10.0 => 2,
        _ => 3,
    };
    let text = format!("{value:.decimals$}");
    if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.').to_owned()
    } else {
        text
    }
}

/// A part of a benchmark name; numbers (divan's args) order by value, so
/// `lookup/100` comes before `lookup/10000`.
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
enum NamePart<'a> {
    Number(u64),
    Text(&'a str),
}

fn name_key(name: &str) -> Vec<NamePart<'_>> {
    name.split('/')
        .map(|part| part.parse().map_or(NamePart::Text(part), NamePart::Number))
        .collect()
}

/// The markdown table of every benchmark both trees measured, sorted by
/// name (numbers by value), followed by the names of those that only one
/// tree has.
pub fn markdown(title: &str, series: &BTreeMap<String, Series>, min_change_pct: f64) -> String {
    let mut series: Vec<(&String, &Series)> = series.iter().collect();
    series.sort_by_cached_key(|(name, _)| name_key(name));
    let mut out = format!(
        "### {title}\n\n\
         | benchmark | baseline median | current median | delta % | spread % | verdict |\n\
         |---|---:|---:|---:|---:|---|\n"
    );
    let mut missing = Vec::new();
    for (name, s) in series {
        let Some(row) = compare(s, min_change_pct) else {
            missing.push(name.as_str());
            continue;
        };
        let spread = row
            .spread_pct
            .map_or_else(|| "n/a".to_owned(), |s| format!("{s:.1}"));
        let _ = writeln!(
            out,
            "| {name} | {} | {} | {:+.1} | {spread} | {} |",
            format_value(row.baseline, &s.unit),
            format_value(row.current, &s.unit),
            row.delta_pct,
            row.verdict.word(),
        );
    }
    if !missing.is_empty() {
        let _ = writeln!(
            out,
            "\nMeasured in one tree only: {}",
            missing
                .iter()
                .map(|name| format!("`{name}`"))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn series(baseline: &[f64], current: &[f64]) -> Series {
        Series {
            baseline: baseline.to_vec(),
            current: current.to_vec(),
            ..Series::nanos()
        }
    }

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), Some(2.5));
        assert_eq!(median(&[]), None);
        assert_eq!(median(&[f64::NAN, 5.0]), Some(5.0));
    }

    #[test]
    fn spread_is_range_over_median() {
        assert_eq!(spread_pct(&[90.0, 100.0, 110.0]), Some(20.0));
        assert_eq!(spread_pct(&[100.0]), None);
    }

    #[test]
    fn delta_inside_the_spread_is_noise() {
        // Baseline 100 ± 5 %, current 104: a 4 % change inside a 10 % spread.
        let row = compare(&series(&[95.0, 100.0, 105.0], &[103.0, 104.0, 105.0]), 0.0).unwrap();
        assert!((row.delta_pct - 4.0).abs() < 1e-9);
        assert_eq!(row.spread_pct, Some(10.0));
        assert_eq!(row.verdict, Verdict::Noise);
    }

    #[test]
    fn the_wider_spread_of_the_two_trees_counts() {
        // Tight baseline, noisy current tree: 8 % slower is inside its 20 %.
        let row = compare(&series(&[100.0, 100.0, 101.0], &[98.0, 108.0, 118.0]), 0.0).unwrap();
        assert_eq!(row.verdict, Verdict::Noise);
        assert!((row.spread_pct.unwrap() - 20.0 / 108.0 * 100.0).abs() < 1e-9);
    }

    #[test]
    fn delta_beyond_the_spread_is_called_by_direction() {
        let slower = compare(&series(&[100.0, 101.0, 102.0], &[120.0, 121.0, 122.0]), 0.0).unwrap();
        assert_eq!(slower.verdict, Verdict::Slower);
        let faster = compare(&series(&[100.0, 101.0, 102.0], &[80.0, 81.0, 82.0]), 0.0).unwrap();
        assert_eq!(faster.verdict, Verdict::Faster);
        // For a throughput, higher is the improvement.
        let throughput = Series {
            better: Better::Higher,
            unit: "Gbit/s".to_owned(),
            ..series(&[10.0, 10.1, 10.2], &[12.0, 12.1, 12.2])
        };
        assert_eq!(compare(&throughput, 0.0).unwrap().verdict, Verdict::Faster);
    }

    #[test]
    fn delta_below_the_floor_is_noise_however_tight_the_spread() {
        let tight = series(&[100.0, 100.1, 100.2], &[96.0, 96.1, 96.2]);
        assert_eq!(compare(&tight, 0.0).unwrap().verdict, Verdict::Faster);
        assert_eq!(compare(&tight, 5.0).unwrap().verdict, Verdict::Noise);
        let big = series(&[100.0, 100.1, 100.2], &[90.0, 90.1, 90.2]);
        assert_eq!(compare(&big, 5.0).unwrap().verdict, Verdict::Faster);
    }

    #[test]
    fn one_repetition_has_no_verdict() {
        let row = compare(&series(&[100.0], &[150.0]), 0.0).unwrap();
        assert_eq!(row.spread_pct, None);
        assert_eq!(row.verdict, Verdict::Unknown);
    }

    #[test]
    fn values_print_in_a_fitting_unit() {
        assert_eq!(format_value(26.34, "ns"), "26.34 ns");
        assert_eq!(format_value(1646.0, "ns"), "1.646 µs");
        assert_eq!(format_value(2_500_000.0, "ns"), "2.5 ms");
        assert_eq!(format_value(0.25, "ns"), "0.25 ns");
        assert_eq!(format_value(9.41, "Gbit/s"), "9.41 Gbit/s");
        assert_eq!(format_value(1234.0, "us"), "1234 us");
    }

    #[test]
    fn args_sort_by_value() {
        let mut all = BTreeMap::new();
        for name in [
            "t/lookup/10000",
            "t/lookup/64",
            "t/lookup/100",
            "t/insert/1",
        ] {
            all.insert(name.to_owned(), series(&[1.0], &[1.0]));
        }
        let table = markdown("t", &all, 0.0);
        let order: Vec<&str> = table
            .lines()
            .filter_map(|line| line.strip_prefix("| t/"))
            .map(|line| line.split(' ').next().unwrap())
            .collect();
        assert_eq!(
            order,
            ["insert/1", "lookup/64", "lookup/100", "lookup/10000"]
        );
    }

    #[test]
    fn table_rows_and_one_sided_benchmarks() {
        let mut all = BTreeMap::new();
        all.insert(
            "tcp/guest_data_segment/1460".to_owned(),
            series(&[20.0, 21.0, 22.0], &[30.0, 31.0, 32.0]),
        );
        all.insert(
            "flow_table/lookup_hit/1".to_owned(),
            series(&[26.0, 26.5, 27.0], &[26.2, 26.4, 26.9]),
        );
        all.insert("backend/new".to_owned(), series(&[], &[2000.0, 2100.0]));
        let table = markdown("divan benches", &all, 5.0);
        let expected = "\
### divan benches

| benchmark | baseline median | current median | delta % | spread % | verdict |
|---|---:|---:|---:|---:|---|
| flow_table/lookup_hit/1 | 26.5 ns | 26.4 ns | -0.4 | 3.8 | noise |
| tcp/guest_data_segment/1460 | 21 ns | 31 ns | +47.6 | 9.5 | slower |

Measured in one tree only: `backend/new`
";
        assert_eq!(table, expected);
    }
}
