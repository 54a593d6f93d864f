//! CloudWatch Embedded Metric Format: each recorded metric is one JSON line
//! on stdout, which Lambda sends to CloudWatch Logs, where CloudWatch turns
//! it into a metric. No network call on the request path, and nothing to
//! flush at the end of an invocation (a line is written as it happens).
//!
//! Each metric is published with no dimensions, so an alarm can watch the
//! total, and metrics that have one dimension (`Denials` by `Reason`,
//! `Unavailable` by `Cause`) are also published by it. Dimension values come
//! from a closed vocabulary (`domain::metrics`): never an ID or a secret.

use crate::domain::metrics::Metric;
use crate::domain::ports::Metrics;
use serde_json::{Map, Value, json};
use std::io::Write;
use std::sync::Mutex;

pub struct EmfMetrics {
    namespace: String,
    out: Mutex<Box<dyn Write + Send>>,
}

impl EmfMetrics {
    pub fn stdout(namespace: &str) -> Self {
        Self::to_writer(namespace, Box::new(std::io::stdout()))
    }

    pub fn to_writer(namespace: &str, out: Box<dyn Write + Send>) -> Self {
        Self {
            namespace: namespace.to_owned(),
            out: Mutex::new(out),
        }
    }
}

/// The EMF document of one metric value at `timestamp_ms`.
pub fn emf_line(namespace: &str, metric: Metric, value: u64, timestamp_ms: i128) -> Value {
    let mut dimensions = vec![json!([])];
    let mut root = Map::new();
    if let Some((name, v)) = metric.dimension() {
        dimensions.push(json!([name]));
        root.insert(name.to_owned(), json!(v));
    }
    root.insert(
        "_aws".to_owned(),
        json!({
            "Timestamp": timestamp_ms as i64,
            "CloudWatchMetrics": [{
                "Namespace": namespace,
                "Dimensions": dimensions,
                "Metrics": [{ "Name": metric.name(), "Unit": "Count" }],
            }],
        }),
    );
    root.insert(metric.name().to_owned(), json!(value));
    // Also a JSON log record like the others (Lambda's log-level filter
    // reads `level`; CloudWatch ignores members it does not use).
    root.insert("level".to_owned(), json!("INFO"));
    root.insert(
        "timestamp".to_owned(),
        json!(
            time::OffsetDateTime::from_unix_timestamp_nanos(timestamp_ms * 1_000_000)
                .ok()
                .and_then(|t| t
                    .format(&time::format_description::well_known::Rfc3339)
                    .ok())
        ),
    );
    root.insert("message".to_owned(), json!("metric"));
    Value::Object(root)
}

impl Metrics for EmfMetrics {
    fn record(&self, metric: Metric, value: u64) {
        let now = time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000;
        let mut line = emf_line(&self.namespace, metric, value, now).to_string();
        line.push('\n');
        // One write per line, under the lock: lines never interleave.
        let mut out = self.out.lock().unwrap_or_else(|e| e.into_inner());
        let _ = out.write_all(line.as_bytes());
        let _ = out.flush();
    }
}

/// Counts in memory (tests and benchmarks).
#[derive(Default)]
pub struct MemoryMetrics {
    counts: Mutex<std::collections::HashMap<Metric, u64>>,
}

impl MemoryMetrics {
    pub fn get(&self, metric: Metric) -> u64 {
        let c = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        c.get(&metric).copied().unwrap_or(0)
    }

    /// The total of a metric over all its dimension values.
    pub fn total(&self, name: &str) -> u64 {
        let c = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        c.iter()
            .filter(|(m, _)| m.name() == name)
            .map(|(_, v)| v)
            .sum()
    }
}

impl Metrics for MemoryMetrics {
    fn record(&self, metric: Metric, value: u64) {
        let mut c = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        *c.entry(metric).or_default() += value;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::metrics::Cause;
    use std::sync::Arc;

    #[derive(Clone, Default)]
    struct Sink(Arc<Mutex<Vec<u8>>>);
    impl Write for Sink {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn each_metric_is_one_emf_line_with_its_dimension() {
        let sink = Sink::default();
        let m = EmfMetrics::to_writer("RecoveryPortal", Box::new(sink.clone()));
        m.record(Metric::KeysDisclosed, 3);
        m.record(Metric::Unavailable(Cause::Kms), 1);
        let text = String::from_utf8(sink.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 2);
        let d = &lines[0];
        assert_eq!(d["KeysDisclosed"], 3);
        let cw = &d["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(cw["Namespace"], "RecoveryPortal");
        assert_eq!(cw["Dimensions"], json!([[]]));
        assert_eq!(
            cw["Metrics"],
            json!([{"Name": "KeysDisclosed", "Unit": "Count"}])
        );
        assert!(d["_aws"]["Timestamp"].as_i64().unwrap() > 1_600_000_000_000);
        // A JSON log record too.
        assert_eq!(d["level"], "INFO");
        assert!(d["timestamp"].as_str().unwrap().ends_with('Z'));
        let u = &lines[1];
        assert_eq!(u["Unavailable"], 1);
        assert_eq!(u["Cause"], "kms");
        assert_eq!(
            u["_aws"]["CloudWatchMetrics"][0]["Dimensions"],
            json!([[], ["Cause"]])
        );
    }

    #[test]
    fn memory_metrics_count_by_metric_and_in_total() {
        let m = MemoryMetrics::default();
        use crate::domain::denial::Denied;
        m.record(Metric::Denials(Denied::NotOwner), 1);
        m.record(Metric::Denials(Denied::RateLimited), 2);
        assert_eq!(m.get(Metric::Denials(Denied::NotOwner)), 1);
        assert_eq!(m.total("Denials"), 3);
        assert_eq!(m.total("KeysDisclosed"), 0);
    }
}
