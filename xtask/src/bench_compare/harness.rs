//! Reading the wall-clock harness's JSON report.
//!
//! The harness (`bench-harness --json FILE`) writes schema 1:
//! `{"schema":1,"machine":{..},"results":[{"path","workload","metric",
//! "unit","better","values","median","min","max"}],"absent":[{"path","why"}]}`.
//! One run of the harness gives one value per result (its median); the
//! repetitions of bench-compare give the run-to-run spread.

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
    /// The measurements.
    pub results: Vec<Measurement>,
    /// Paths the harness could not run, with the reason.
    pub absent: Vec<(String, String)>,
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
    let results = root
        .get("results")
        .and_then(Value::as_array)
        .ok_or("harness JSON has no `results` array")?
        .iter()
        .map(measurement)
        .collect::<Result<Vec<_>, _>>()?;
    let absent = root
        .get("absent")
        .and_then(Value::as_array)
        .map(|entries| {
            entries
                .iter()
                .map(|e| {
                    (
                        text(e, "path").unwrap_or("?"),
                        text(e, "why").unwrap_or("?"),
                    )
                })
                .map(|(path, why)| (path.to_owned(), why.to_owned()))
                .collect()
        })
        .unwrap_or_default();
    Ok(Run { results, absent })
}

fn text<'a>(value: &'a Value, field: &str) -> Option<&'a str> {
    value.get(field).and_then(Value::as_str)
}

fn measurement(entry: &Value) -> Result<Measurement, String> {
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
    let median = entry
        .get("median")
        .and_then(Value::as_f64)
        .ok_or_else(|| format!("{name}: no numeric `median`"))?;
    Ok(Measurement {
        name,
        unit: field("unit")?.to_owned(),
        better,
        median,
    })
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
         "max": 9.1}
      ],
      "absent": [{"path": "passt", "why": "passt not installed"}]
    }"#;

    #[test]
    fn results_and_absent_paths_are_read() {
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
            run.absent,
            [("passt".to_owned(), "passt not installed".to_owned())]
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
    fn absent_list_may_be_missing() {
        let run = parse(r#"{"schema": 1, "results": []}"#).unwrap();
        assert_eq!(run, Run::default());
    }
}
