//! Reading the wall-clock harness's JSON report.
//!
//! The harness (`bench-harness --json FILE`) writes schema 1:
//! `{"schema":1,"machine":{..},"results":[{"path","workload","metric",
//! "unit","better","values","median","min","max"}],"absent":[{"path","why"}]}`.
//! An `absent` entry may name a `workload` too, `failures` lists what was
//! attempted and failed, and a result none of whose repetitions succeeded
//! has a `null` median. One run of the harness gives one value per result
//! (its median); the repetitions of bench-compare give the run-to-run
//! spread.

use serde_json::Value;

use super::report::Better;

/// The schema version this reader understands.
const SCHEMA: u64 = 1;

/// One result of a harness run.
#[derive(Clone, Debug, PartialEq)]
pub struct Measurement {
    /// `path/workload/metric`.
    pub name: String,
    /// The unit, as the harness names it.
    pub unit: String,
    /// Which way is better.
    pub better: Better,
    /// The run's median.
    pub median: f64,
}

/// What one harness run reported.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Run {
    /// The measurements that have a median.
    pub results: Vec<Measurement>,
    /// What the harness could not run or measure, one line each:
    /// `path[/workload]: why`, and the failures.
    pub missing: Vec<String>,
}

/// Parses the harness's JSON report.
pub fn parse(json: &str) -> Result<Run, String> {
    let root: Value =
        serde_json::from_str(json).map_err(|e| format!("harness JSON does not parse: {e}"))?;
    match root.get("schema").and_then(Value::as_u64) {
        Some(SCHEMA) => {}
        other => {
            return Err(format!(
                "harness JSON has schema {other:?}, expected {SCHEMA}"
            ));
        }
    }
    let mut run = Run::default();
    let results = root
        .get("results")
        .and_then(Value::as_array)
        .ok_or("harness JSON has no `results` array")?;
    for entry in results {
        match measurement(entry)? {
            Some(m) => run.results.push(m),
            None => run
                .missing
                .push(format!("{}: no successful repetition", place(entry))),
        }
    }
    for entry in list(&root, "absent") {
        let why = text(entry, "why").unwrap_or("?");
        run.missing.push(format!("{} absent: {why}", place(entry)));
    }
    for entry in list(&root, "failures") {
        let error = text(entry, "error").unwrap_or("?");
        run.missing
            .push(format!("{} failed: {error}", place(entry)));
    }
    Ok(run)
}

/// The entries of an optional array field.
fn list<'a>(root: &'a Value, field: &str) -> &'a [Value] {
    root.get(field)
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice)
}

/// `path[/workload]` of an entry.
fn place(entry: &Value) -> String {
    let path = text(entry, "path").unwrap_or("?");
    match text(entry, "workload") {
        Some(workload) => format!("{path}/{workload}"),
        None => path.to_owned(),
    }
}

fn text<'a>(value: &'a Value, field: &str) -> Option<&'a str> {
    value.get(field).and_then(Value::as_str)
}

/// A result; `None` when its median is `null` (no repetition succeeded).
fn measurement(entry: &Value) -> Result<Option<Measurement>, String> {
    let field = |name: &str| {
        text(entry, name).ok_or_else(|| format!("harness result without `{name}`: {entry}"))
    };
    let name = format!(
        "{}/{}/{}",
        field("path")?,
        field("workload")?,
        field("metric")?
    );
    let better = match field("better")? {
        "lower" => Better::Lower,
        "higher" => Better::Higher,
        other => {
            return Err(format!(
                "{name}: `better` is {other:?}, not lower or higher"
            ));
        }
    };
    let median = match entry.get("median") {
        None | Some(Value::Null) => return Ok(None),
        Some(value) => value
            .as_f64()
            .ok_or_else(|| format!("{name}: `median` is not a number"))?,
    };
    Ok(Some(Measurement {
        name,
        unit: field("unit")?.to_owned(),
        better,
        median,
    }))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    const SAMPLE: &str = r#"{
      "schema": 1,
      "machine": {"cpus": 2, "kernel": "6.1.0"},
      "results": [
        {"path": "slipway-65520", "workload": "tcp_rr", "metric": "p50_us", "unit": "us",
         "better": "lower", "values": [41.0, 40.2, 43.9], "median": 41.0, "min": 40.2, "max": 43.9},
        {"path": "slipway-1500", "workload": "tcp_stream", "metric": "throughput",
         "unit": "Gbit/s", "better": "higher", "values": [9.1], "median": 9.1, "min": 9.1,
         "max": 9.1},
        {"path": "slipway-1500", "workload": "dns", "metric": "qps", "unit": "1/s",
         "better": "higher", "values": [], "median": null, "min": null, "max": null}
      ],
      "absent": [{"path": "pasta", "why": "pasta not installed"},
                 {"path": "slipway-1500", "workload": "idle_10k", "why": "too few descriptors"}],
      "failures": [{"path": "slipway-1500", "workload": "dns", "rep": 1, "error": "timed out"}]
    }"#;

    #[test]
    fn results_absent_paths_and_failures_are_read() {
        let run = parse(SAMPLE).unwrap();
        assert_eq!(
            run.results,
            [
                Measurement {
                    name: "slipway-65520/tcp_rr/p50_us".to_owned(),
                    unit: "us".to_owned(),
                    better: Better::Lower,
                    median: 41.0,
                },
                Measurement {
                    name: "slipway-1500/tcp_stream/throughput".to_owned(),
                    unit: "Gbit/s".to_owned(),
                    better: Better::Higher,
                    median: 9.1,
                },
            ]
        );
        assert_eq!(
            run.missing,
            [
                "slipway-1500/dns: no successful repetition",
                "pasta absent: pasta not installed",
                "slipway-1500/idle_10k absent: too few descriptors",
                "slipway-1500/dns failed: timed out",
            ]
        );
    }

    #[test]
    fn other_schema_or_broken_entries_are_refused() {
        assert!(parse(&SAMPLE.replace("\"schema\": 1", "\"schema\": 2")).is_err());
        assert!(parse(&SAMPLE.replace("\"lower\"", "\"sideways\"")).is_err());
        assert!(parse(&SAMPLE.replace("\"median\": 41.0", "\"median\": \"41\"")).is_err());
        assert!(parse("not json").is_err());
        assert!(parse(r#"{"schema": 1}"#).is_err());
    }

    #[test]
    fn real_report_of_the_harness() {
        let run = parse(include_str!("testdata/harness-slipway-1500.json")).unwrap();
        let names: Vec<&str> = run.results.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "slipway-1500/tcp_rr/p50_us",
                "slipway-1500/tcp_rr/p99_us",
                "slipway-1500/tcp_rr/tps",
                "slipway-1500/dns/qps",
            ]
        );
        assert_eq!(run.results[0].unit, "us");
        assert_eq!(run.results[0].better, Better::Lower);
        assert!((run.results[0].median - 11.251).abs() < 1e-9);
        assert_eq!(run.results[3].better, Better::Higher);
        assert!(run.missing.is_empty());
    }

    #[test]
    fn absent_list_may_be_missing() {
        let run = parse(r#"{"schema": 1, "results": []}"#).unwrap();
        assert_eq!(run, Run::default());
    }
}
