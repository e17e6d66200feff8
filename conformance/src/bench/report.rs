//! A benchmark's results: a table for people, JSON for machines.

use std::fmt;
use std::time::Duration;

use serde::Serialize;

use super::Summary;
use crate::client::Endpoint;

#[derive(Debug, Clone, Serialize)]
pub struct BenchReport {
    pub workload: &'static str,
    /// What each iteration did, in words.
    pub what: String,
    pub iterations: usize,
    pub endpoints: Vec<EndpointTimes>,
    /// The first endpoint's times over the second's, when there are two.
    pub ratio: Option<Ratio>,
    /// What may make the numbers mean less than they seem to.
    pub notes: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct EndpointTimes {
    pub endpoint: String,
    /// Every iteration's wall time, in running order.
    pub seconds: Vec<f64>,
    #[serde(flatten)]
    pub summary: Summary,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Ratio {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub max: f64,
}

impl BenchReport {
    /// `times` holds each endpoint's samples; none may be empty.
    pub fn new(
        workload: &'static str,
        what: String,
        iterations: usize,
        times: Vec<(&Endpoint, Vec<Duration>)>,
        notes: Vec<String>,
    ) -> Self {
        let endpoints: Vec<_> = times
            .into_iter()
            .map(|(endpoint, samples)| EndpointTimes {
                endpoint: endpoint.to_string(),
                seconds: samples.iter().map(Duration::as_secs_f64).collect(),
                summary: Summary::of(&samples).expect("every endpoint ran at least one iteration"),
            })
            .collect();
        let ratio = match endpoints.as_slice() {
            [first, second] => Some(Ratio {
                p50: first.summary.p50 / second.summary.p50,
                p90: first.summary.p90 / second.summary.p90,
                p99: first.summary.p99 / second.summary.p99,
                max: first.summary.max / second.summary.max,
            }),
            _ => None,
        };
        Self { workload, what, iterations, endpoints, ratio, notes }
    }
}

impl fmt::Display for BenchReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{}: {}, {} iterations", self.workload, self.what, self.iterations)?;
        write_table(f, None, &[self])?;
        for note in &self.notes {
            writeln!(f, "note: {note}")?;
        }
        Ok(())
    }
}

const RATIO: &str = "first / second";

/// One table of several measurements of the same endpoints: a row per endpoint, and the ratio's
/// row when there are two. `label` heads a first column naming each measurement (its workload).
pub(super) fn write_table(f: &mut fmt::Formatter<'_>, label: Option<&str>, reports: &[&BenchReport]) -> fmt::Result {
    let names = reports.iter().flat_map(|r| r.endpoints.iter().map(|e| e.endpoint.len()));
    let width = names.chain([RATIO.len(), "endpoint".len()]).max().unwrap_or_default();
    let label_width = match label {
        Some(label) => reports.iter().map(|r| r.workload.len()).chain([label.len()]).max().unwrap_or_default() + 2,
        None => 0,
    };
    let row = |f: &mut fmt::Formatter<'_>, first: &str, name: &str, cells: [String; 4]| {
        let [p50, p90, p99, max] = cells;
        writeln!(f, "{first:<label_width$}{name:<width$}  {p50:>9}  {p90:>9}  {p99:>9}  {max:>9}")
    };
    let heads = ["p50", "p90", "p99", "max"].map(str::to_owned);
    row(f, label.unwrap_or_default(), "endpoint", heads)?;
    for report in reports {
        let mut first = if label.is_some() { report.workload } else { "" };
        for times in &report.endpoints {
            let Summary { p50, p90, p99, max } = times.summary;
            row(f, first, &times.endpoint, [p50, p90, p99, max].map(|s| format!("{s:.3}s")))?;
            first = "";
        }
        if let Some(Ratio { p50, p90, p99, max }) = report.ratio {
            row(f, "", RATIO, [p50, p90, p99, max].map(|r| format!("{r:.2}x")))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(values: &[u64]) -> Vec<Duration> {
        values.iter().map(|&v| Duration::from_millis(v)).collect()
    }

    #[test]
    fn one_endpoint_has_no_ratio() {
        let endpoint = Endpoint::parse("/run/a.sock").unwrap();
        let report = BenchReport::new("pull", "cold".into(), 2, vec![(&endpoint, ms(&[200, 100]))], vec![]);
        assert_eq!(report.ratio, None);
        assert_eq!(report.endpoints[0].seconds, [0.2, 0.1]);
        assert_eq!(
            report.to_string(),
            "pull: cold, 2 iterations\n\
             endpoint                  p50        p90        p99        max\n\
             unix:///run/a.sock     0.100s     0.200s     0.200s     0.200s\n"
        );
    }

    #[test]
    fn two_endpoints_compare() {
        let (a, b) = (Endpoint::parse("/run/a.sock").unwrap(), Endpoint::parse("/run/b.sock").unwrap());
        let notes = vec!["layers stayed".to_owned()];
        let report = BenchReport::new(
            "pull",
            "cold".into(),
            3,
            vec![(&a, ms(&[400, 800, 1600])), (&b, ms(&[200, 400, 800]))],
            notes,
        );
        assert_eq!(report.ratio, Some(Ratio { p50: 2.0, p90: 2.0, p99: 2.0, max: 2.0 }));
        let text = report.to_string();
        assert!(text.contains("\nfirst / second          2.00x      2.00x      2.00x      2.00x\n"), "{text}");
        assert!(text.ends_with("note: layers stayed\n"), "{text}");
        let json = serde_json::to_value(&report).unwrap();
        assert_eq!(json["endpoints"][1]["endpoint"], "unix:///run/b.sock");
        assert_eq!(json["endpoints"][1]["p90"], 0.8);
        assert_eq!(json["ratio"]["max"], 2.0);
    }
}
