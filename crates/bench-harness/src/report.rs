//! The results of a harness run and their two renderings: JSON for
//! machines (the schema in the crate documentation) and markdown for people.
//!
//! Invariant: a [`Report`] is plain data. Rendering reads no clock, no file
//! and no process; what the machine is and when the run happened come in
//! through [`Report::machine`].

use std::fmt::Write as _;

use serde_json::{Map, Value, json};

use crate::stats::Summary;
use crate::workloads::{Family, Workload};

/// The version of the JSON layout; bumped on any incompatible change.
pub const SCHEMA: u64 = 1;

/// The path every result is compared with first: the established
/// user-mode stack.
pub const REFERENCE_PEER: &str = "pasta";
/// The path every result is compared with second: the kernel's own veth.
pub const REFERENCE_KERNEL: &str = "veth";

/// Which direction of a metric is an improvement.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Better {
    /// More is better (throughput, transactions per second).
    Higher,
    /// Less is better (latency, CPU time, wakeups, memory).
    Lower,
}

impl Better {
    /// The JSON spelling: `"higher"` or `"lower"`.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Better::Higher => "higher",
            Better::Lower => "lower",
        }
    }

    fn parse(text: &str) -> Option<Self> {
        match text {
            "higher" => Some(Better::Higher),
            "lower" => Some(Better::Lower),
            _ => None,
        }
    }
}

/// What a measured number is: its name, unit and good direction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Metric {
    /// The name in the JSON (`p50_us`).
    pub name: &'static str,
    /// The unit (`us`).
    pub unit: &'static str,
    /// Which direction is better.
    pub better: Better,
}

/// Every metric the harness measures.
pub mod metric {
    use super::{Better, Metric};

    /// Throughput in Gbit/s.
    pub const GBIT_S: Metric = Metric {
        name: "gbit_s",
        unit: "Gbit/s",
        better: Better::Higher,
    };
    /// CPU seconds of the stack's process per Gbit carried.
    pub const CPU_S_PER_GBIT: Metric = Metric {
        name: "cpu_s_per_gbit",
        unit: "s/Gbit",
        better: Better::Lower,
    };
    /// Median latency in microseconds.
    pub const P50_US: Metric = Metric {
        name: "p50_us",
        unit: "us",
        better: Better::Lower,
    };
    /// 99th-percentile latency in microseconds.
    pub const P99_US: Metric = Metric {
        name: "p99_us",
        unit: "us",
        better: Better::Lower,
    };
    /// Transactions per second.
    pub const TPS: Metric = Metric {
        name: "tps",
        unit: "1/s",
        better: Better::Higher,
    };
    /// Queries answered per second.
    pub const QPS: Metric = Metric {
        name: "qps",
        unit: "1/s",
        better: Better::Higher,
    };
    /// Transactions that failed (refused or reset) and were not timed.
    pub const ERRORS: Metric = Metric {
        name: "errors",
        unit: "count",
        better: Better::Lower,
    };
    /// Wakeups (context switches) of the stack's process per second.
    pub const WAKEUPS_PER_S: Metric = Metric {
        name: "wakeups_per_s",
        unit: "1/s",
        better: Better::Lower,
    };
    /// Resident memory of the stack's process in MiB.
    pub const RSS_MIB: Metric = Metric {
        name: "rss_mib",
        unit: "MiB",
        better: Better::Lower,
    };
}

/// One metric of one workload on one path, over every repetition.
#[derive(Clone, Debug, PartialEq)]
pub struct Row {
    /// The path (`slipway-65520`).
    pub path: String,
    /// The workload (`tcp_rr`).
    pub workload: String,
    /// The metric's name.
    pub metric: String,
    /// The metric's unit.
    pub unit: String,
    /// Which direction is better.
    pub better: Better,
    /// One value per successful repetition, in the order measured.
    pub values: Vec<f64>,
}

impl Row {
    /// The median, minimum and maximum of the values.
    #[must_use]
    pub fn summary(&self) -> Option<Summary> {
        Summary::of(&self.values)
    }
}

/// A path or workload that did not run, and why (a peer not installed, no
/// root, a tool missing). Absence is not failure.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Absent {
    /// The path.
    pub path: String,
    /// The workload, when only one workload is absent on the path.
    pub workload: Option<String>,
    /// Why.
    pub why: String,
}

/// A workload that was attempted and failed in one repetition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    /// The path.
    pub path: String,
    /// The workload, or `None` when the path itself would not start.
    pub workload: Option<String>,
    /// The repetition, from 1.
    pub rep: u32,
    /// What went wrong.
    pub error: String,
}

/// Everything a harness run produced.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Report {
    /// Facts about the machine and the run (kernel, CPU, tool versions,
    /// repetitions, duration), as a JSON object.
    pub machine: Map<String, Value>,
    /// The results, one row per path, workload and metric, in the order
    /// first measured.
    pub rows: Vec<Row>,
    /// What did not run.
    pub absent: Vec<Absent>,
    /// What failed.
    pub failures: Vec<Failure>,
}

impl Report {
    /// Adds one repetition's value of `metric` for `workload` on `path`.
    /// Non-finite values are dropped: they would poison the statistics.
    pub fn record(&mut self, path: &str, workload: &str, metric: Metric, value: f64) {
        if !value.is_finite() {
            return;
        }
        if let Some(row) = self
            .rows
            .iter_mut()
            .find(|r| r.path == path && r.workload == workload && r.metric == metric.name)
        {
            row.values.push(value);
            return;
        }
        self.rows.push(Row {
            path: path.to_owned(),
            workload: workload.to_owned(),
            metric: metric.name.to_owned(),
            unit: metric.unit.to_owned(),
            better: metric.better,
            values: vec![value],
        });
    }

    /// The row for `path`, `workload` and `metric`, if measured.
    #[must_use]
    pub fn row(&self, path: &str, workload: &str, metric: &str) -> Option<&Row> {
        self.rows
            .iter()
            .find(|r| r.path == path && r.workload == workload && r.metric == metric)
    }

    /// The median of `row` divided by the median of the same workload and
    /// metric on `reference`; `None` when either is missing or the
    /// reference is zero.
    #[must_use]
    pub fn ratio(&self, row: &Row, reference: &str) -> Option<f64> {
        let own = row.summary()?.median;
        let other = self
            .row(reference, &row.workload, &row.metric)?
            .summary()?
            .median;
        (other != 0.0).then(|| own / other)
    }

    /// The median of an IPv6 `row` divided by the median of its IPv4 twin
    /// (`tcp_rr6` over `tcp_rr`) on the same path and metric; `None` for
    /// an IPv4 row, when either is missing, or the IPv4 median is zero.
    #[must_use]
    pub fn family_ratio(&self, row: &Row) -> Option<f64> {
        let workload = Workload::parse(&row.workload)?;
        if workload.family() != Family::V6 {
            return None;
        }
        let twin = workload.over(Family::V4)?;
        let own = row.summary()?.median;
        let ipv4 = self
            .row(&row.path, twin.name(), &row.metric)?
            .summary()?
            .median;
        (ipv4 != 0.0).then(|| own / ipv4)
    }

    /// The report as JSON (the schema in the crate documentation).
    #[must_use]
    pub fn to_json(&self) -> Value {
        let results: Vec<Value> = self
            .rows
            .iter()
            .map(|row| {
                let summary = row.summary();
                json!({
                    "path": row.path,
                    "workload": row.workload,
                    "metric": row.metric,
                    "unit": row.unit,
                    "better": row.better.as_str(),
                    "values": row.values,
                    "median": summary.map(|s| s.median),
                    "min": summary.map(|s| s.min),
                    "max": summary.map(|s| s.max),
                    "vs_pasta": self.ratio(row, REFERENCE_PEER),
                    "vs_veth": self.ratio(row, REFERENCE_KERNEL),
                    "v6_vs_v4": self.family_ratio(row),
                })
            })
            .collect();
        let absent: Vec<Value> = self
            .absent
            .iter()
            .map(|a| {
                let mut entry = json!({ "path": a.path, "why": a.why });
                if let (Some(workload), Some(map)) = (&a.workload, entry.as_object_mut()) {
                    map.insert("workload".into(), json!(workload));
                }
                entry
            })
            .collect();
        let failures: Vec<Value> = self
            .failures
            .iter()
            .map(|f| json!({ "path": f.path, "workload": f.workload, "rep": f.rep, "error": f.error }))
            .collect();
        json!({
            "schema": SCHEMA,
            "machine": self.machine,
            "results": results,
            "absent": absent,
            "failures": failures,
        })
    }

    /// Reads a report written by [`Report::to_json`] (the repetitions'
    /// values are what count; medians and ratios are recomputed).
    ///
    /// # Errors
    /// A message naming what is missing or of the wrong type.
    pub fn from_json(value: &Value) -> Result<Self, String> {
        let schema = value.get("schema").and_then(Value::as_u64);
        if schema != Some(SCHEMA) {
            return Err(format!("schema {schema:?}, expected {SCHEMA}"));
        }
        let text = |v: &Value, key: &str| {
            v.get(key)
                .and_then(Value::as_str)
                .map(str::to_owned)
                .ok_or_else(|| format!("a result without a string `{key}`"))
        };
        let mut report = Report {
            machine: value
                .get("machine")
                .and_then(Value::as_object)
                .cloned()
                .unwrap_or_default(),
            ..Report::default()
        };
        for entry in value
            .get("results")
            .and_then(Value::as_array)
            .ok_or("no `results` array")?
        {
            let better = Better::parse(&text(entry, "better")?).ok_or("bad `better`")?;
            let values = entry
                .get("values")
                .and_then(Value::as_array)
                .ok_or("a result without `values`")?
                .iter()
                .filter_map(Value::as_f64)
                .collect();
            report.rows.push(Row {
                path: text(entry, "path")?,
                workload: text(entry, "workload")?,
                metric: text(entry, "metric")?,
                unit: text(entry, "unit")?,
                better,
                values,
            });
        }
        for entry in value
            .get("absent")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            report.absent.push(Absent {
                path: text(entry, "path")?,
                workload: entry
                    .get("workload")
                    .and_then(Value::as_str)
                    .map(str::to_owned),
                why: text(entry, "why")?,
            });
        }
        Ok(report)
    }

    /// The report as markdown: a summary table of the headline numbers by
    /// path, then every result with its spread and ratios, then what was
    /// absent or failed.
    #[must_use]
    pub fn to_markdown(&self) -> String {
        let mut out = String::new();
        self.write_summary(&mut out);
        self.write_families(&mut out);
        self.write_detail(&mut out);
        if !self.absent.is_empty() {
            out.push_str("\nAbsent (not run, not failed):\n\n");
            for a in &self.absent {
                let what = a
                    .workload
                    .as_ref()
                    .map_or_else(|| a.path.clone(), |w| format!("{} / {w}", a.path));
                let _ = writeln!(out, "- {what}: {}", a.why);
            }
        }
        if !self.failures.is_empty() {
            out.push_str("\nFailures:\n\n");
            for f in &self.failures {
                let what = f
                    .workload
                    .as_ref()
                    .map_or_else(|| f.path.clone(), |w| format!("{} / {w}", f.path));
                let _ = writeln!(out, "- {what} (rep {}): {}", f.rep, one_line(&f.error));
            }
        }
        out
    }

    /// Paths in the order first measured.
    #[must_use]
    pub fn paths(&self) -> Vec<&str> {
        let mut paths: Vec<&str> = Vec::new();
        for row in &self.rows {
            if !paths.contains(&row.path.as_str()) {
                paths.push(&row.path);
            }
        }
        paths
    }

    /// (workload, metric) pairs in the order first measured.
    fn series(&self) -> Vec<(&str, &str)> {
        let mut series: Vec<(&str, &str)> = Vec::new();
        for row in &self.rows {
            let key = (row.workload.as_str(), row.metric.as_str());
            if !series.contains(&key) {
                series.push(key);
            }
        }
        series
    }

    fn write_summary(&self, out: &mut String) {
        const HEADLINES: [(&str, &str, &str); 16] = [
            ("tcp_g2h", "gbit_s", "g→h Gbit/s"),
            ("tcp_g2h6", "gbit_s", "g→h IPv6 Gbit/s"),
            ("tcp_h2g", "gbit_s", "h→g Gbit/s"),
            ("tcp_h2g6", "gbit_s", "h→g IPv6 Gbit/s"),
            ("tcp_rr", "p50_us", "TCP_RR p50 µs"),
            ("tcp_rr6", "p50_us", "TCP_RR IPv6 p50 µs"),
            ("tcp_crr", "p50_us", "TCP_CRR p50 µs"),
            ("tcp_crr6", "p50_us", "TCP_CRR IPv6 p50 µs"),
            ("udp_rr", "p50_us", "UDP_RR p50 µs"),
            ("dns", "qps", "DNS q/s"),
            ("icmp", "p50_us", "ping p50 µs"),
            ("fwd_connect", "p50_us", "fwd connect p50 µs"),
            ("tcp_g2h", "cpu_s_per_gbit", "g→h CPU s/Gbit"),
            ("tcp_h2g", "cpu_s_per_gbit", "h→g CPU s/Gbit"),
            ("idle", "wakeups_per_s", "idle wakeups/s"),
            ("idle_10k", "wakeups_per_s", "10k flows wakeups/s"),
        ];
        let columns: Vec<_> = HEADLINES
            .iter()
            .filter(|(w, m, _)| self.rows.iter().any(|r| r.workload == *w && r.metric == *m))
            .chain(
                [("idle_10k", "rss_mib", "10k flows RSS MiB")]
                    .iter()
                    .filter(|(w, m, _)| {
                        self.rows.iter().any(|r| r.workload == *w && r.metric == *m)
                    }),
            )
            .collect();
        if columns.is_empty() {
            return;
        }
        out.push_str("| path |");
        for (_, _, title) in &columns {
            let _ = write!(out, " {title} |");
        }
        out.push_str("\n|---|");
        out.push_str(&"---:|".repeat(columns.len()));
        out.push('\n');
        for path in self.paths() {
            let _ = write!(out, "| {path} |");
            for (workload, metric, _) in &columns {
                let cell = self
                    .row(path, workload, metric)
                    .and_then(Row::summary)
                    .map_or_else(|| "–".to_owned(), |s| number(s.median));
                let _ = write!(out, " {cell} |");
            }
            out.push('\n');
        }
    }

    /// Every IPv6 result beside its IPv4 twin on the same path, with their
    /// ratio; nothing when the run measured no IPv6.
    fn write_families(&self, out: &mut String) {
        let mut lines = String::new();
        for path in self.paths() {
            for row in self.rows.iter().filter(|r| r.path == path) {
                let Some(ratio) = self.family_ratio(row) else {
                    continue;
                };
                let Some(twin) = Workload::parse(&row.workload).and_then(|w| w.over(Family::V4))
                else {
                    continue;
                };
                let median = |r: Option<&Row>| r.and_then(Row::summary).map(|s| s.median);
                let (Some(ipv4), Some(ipv6)) = (
                    median(self.row(path, twin.name(), &row.metric)),
                    median(Some(row)),
                ) else {
                    continue;
                };
                let _ = writeln!(
                    lines,
                    "| {path} | {} | {} ({}, {} better) | {} | {} | {ratio:.2}× |",
                    twin.name(),
                    row.metric,
                    row.unit,
                    row.better.as_str(),
                    number(ipv4),
                    number(ipv6),
                );
            }
        }
        if lines.is_empty() {
            return;
        }
        out.push_str(
            "\nIPv6 beside IPv4 (medians on the same path in the same run):\n\n\
             | path | workload | metric | IPv4 | IPv6 | IPv6/IPv4 |\n\
             |---|---|---|---:|---:|---:|\n",
        );
        out.push_str(&lines);
    }

    fn write_detail(&self, out: &mut String) {
        out.push_str(
            "\n| workload | metric | path | median | min–max | vs pasta | vs veth |\n\
             |---|---|---|---:|---:|---:|---:|\n",
        );
        let paths = self.paths();
        for (workload, metric) in self.series() {
            for path in &paths {
                let Some(row) = self.row(path, workload, metric) else {
                    continue;
                };
                let Some(s) = row.summary() else { continue };
                let ratio = |reference| {
                    self.ratio(row, reference)
                        .map_or_else(|| "–".to_owned(), |r| format!("{r:.2}×"))
                };
                let _ = writeln!(
                    out,
                    "| {workload} | {metric} ({}, {} better) | {path} | {} | {}–{} | {} | {} |",
                    row.unit,
                    row.better.as_str(),
                    number(s.median),
                    number(s.min),
                    number(s.max),
                    ratio(REFERENCE_PEER),
                    ratio(REFERENCE_KERNEL),
                );
            }
        }
    }
}

/// A number with as many digits as it is useful to read: three
/// significant digits, at most two decimals.
#[must_use]
pub fn number(value: f64) -> String {
    let magnitude = value.abs();
    if magnitude >= 100.0 {
        format!("{value:.0}")
    } else if magnitude >= 10.0 {
        format!("{value:.1}")
    } else {
        format!("{value:.2}")
    }
}

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn sample() -> Report {
        let mut report = Report::default();
        for (path, rr) in [
            ("slipway-65520", [30.0, 28.0, 35.0]),
            ("pasta", [45.0, 50.0, 47.0]),
            ("veth", [20.0, 21.0, 22.0]),
        ] {
            for value in rr {
                report.record(path, "tcp_rr", metric::P50_US, value);
            }
            report.record(path, "tcp_g2h", metric::GBIT_S, 10.0);
        }
        report.absent.push(Absent {
            path: "slirp4netns-1500".into(),
            workload: None,
            why: "slirp4netns not installed".into(),
        });
        report
    }

    #[test]
    fn json_has_the_documented_fields_and_ratios() {
        let json = sample().to_json();
        assert_eq!(json["schema"], 1);
        let results = json["results"].as_array().unwrap();
        let rr = results
            .iter()
            .find(|r| r["path"] == "slipway-65520" && r["workload"] == "tcp_rr")
            .unwrap();
        assert_eq!(rr["metric"], "p50_us");
        assert_eq!(rr["unit"], "us");
        assert_eq!(rr["better"], "lower");
        assert_eq!(rr["values"], json!([30.0, 28.0, 35.0]));
        assert_eq!(rr["median"], 30.0);
        assert_eq!(rr["min"], 28.0);
        assert_eq!(rr["max"], 35.0);
        assert!((rr["vs_pasta"].as_f64().unwrap() - 30.0 / 47.0).abs() < 1e-12);
        assert!((rr["vs_veth"].as_f64().unwrap() - 30.0 / 21.0).abs() < 1e-12);
        assert_eq!(json["absent"][0]["path"], "slirp4netns-1500");
        assert!(json["absent"][0].get("workload").is_none());
    }

    #[test]
    fn json_round_trips() {
        let report = sample();
        let back = Report::from_json(&report.to_json()).unwrap();
        assert_eq!(back.rows, report.rows);
        assert_eq!(back.absent, report.absent);
        assert!(Report::from_json(&json!({"schema": 2, "results": []})).is_err());
    }

    #[test]
    fn non_finite_values_are_not_recorded() {
        let mut report = Report::default();
        report.record("veth", "dns", metric::QPS, f64::INFINITY);
        report.record("veth", "dns", metric::QPS, f64::NAN);
        assert!(report.rows.is_empty());
    }

    #[test]
    fn markdown_shows_median_spread_and_ratios() {
        let markdown = sample().to_markdown();
        assert!(
            markdown.contains("| tcp_rr | p50_us (us, lower better) | slipway-65520 | 30.0 | 28.0–35.0 | 0.64× | 1.43× |"),
            "{markdown}"
        );
        // The summary table has one line per path, in measuring order.
        assert!(
            markdown.starts_with("| path | g→h Gbit/s | TCP_RR p50 µs |"),
            "{markdown}"
        );
        assert!(markdown.contains("| pasta | 10.0 | 47.0 |"), "{markdown}");
        assert!(markdown.contains("- slirp4netns-1500: slirp4netns not installed"));
    }

    /// slipway and veth with IPv4 and IPv6 rows; pasta with IPv4 only.
    fn dual_stack_sample() -> Report {
        let mut report = sample();
        for (path, gbit6, rr6) in [("slipway-65520", 9.0, 33.0), ("veth", 12.5, 20.0)] {
            report.record(path, "tcp_g2h6", metric::GBIT_S, gbit6);
            report.record(path, "tcp_rr6", metric::P50_US, rr6);
        }
        report
    }

    #[test]
    fn ipv6_rows_carry_their_ratio_to_the_ipv4_twin_on_the_same_path() {
        let report = dual_stack_sample();
        let ratio = |path, workload, metric| {
            report.family_ratio(report.row(path, workload, metric).unwrap())
        };
        assert_eq!(ratio("slipway-65520", "tcp_g2h6", "gbit_s"), Some(0.9));
        assert_eq!(ratio("slipway-65520", "tcp_rr6", "p50_us"), Some(1.1));
        assert_eq!(ratio("veth", "tcp_g2h6", "gbit_s"), Some(1.25));
        // IPv4 rows have no family ratio, and neither has an IPv6 row
        // whose twin was not measured.
        assert_eq!(ratio("pasta", "tcp_g2h", "gbit_s"), None);
        let mut lone = Report::default();
        lone.record("pasta", "tcp_crr6", metric::P50_US, 50.0);
        assert_eq!(lone.family_ratio(&lone.rows[0]), None);
        let json = report.to_json();
        let results = json["results"].as_array().unwrap();
        let find = |path: &str, workload: &str| {
            results
                .iter()
                .find(|r| r["path"] == path && r["workload"] == workload)
                .unwrap()
        };
        assert_eq!(find("veth", "tcp_g2h6")["v6_vs_v4"], 1.25);
        assert!(find("veth", "tcp_g2h")["v6_vs_v4"].is_null());
        let back = Report::from_json(&json).unwrap();
        assert_eq!(back.rows, report.rows);
    }

    #[test]
    fn markdown_puts_ipv6_beside_ipv4_per_path() {
        let markdown = dual_stack_sample().to_markdown();
        assert!(
            markdown.starts_with(
                "| path | g→h Gbit/s | g→h IPv6 Gbit/s | TCP_RR p50 µs | TCP_RR IPv6 p50 µs |"
            ),
            "{markdown}"
        );
        assert!(
            markdown.contains("| pasta | 10.0 | – | 47.0 | – |"),
            "{markdown}"
        );
        for line in [
            "| slipway-65520 | tcp_rr | p50_us (us, lower better) | 30.0 | 33.0 | 1.10× |",
            "| slipway-65520 | tcp_g2h | gbit_s (Gbit/s, higher better) | 10.0 | 9.00 | 0.90× |",
            "| veth | tcp_g2h | gbit_s (Gbit/s, higher better) | 10.0 | 12.5 | 1.25× |",
        ] {
            assert!(markdown.contains(line), "{line}\n{markdown}");
        }
        // The section is there only when IPv6 was measured.
        assert!(!sample().to_markdown().contains("IPv6 beside IPv4"));
    }

    #[test]
    fn numbers_keep_three_significant_digits() {
        assert_eq!(number(1234.56), "1235");
        assert_eq!(number(21.37), "21.4");
        assert_eq!(number(0.123), "0.12");
    }
}
