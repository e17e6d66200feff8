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
                max: first.summary.max / second.summary.max,
            }),
            _ => None,
        };
        Self { workload, what, iterations, endpoints, ratio, notes }
    }
}

impl fmt::Display for BenchReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const RATIO: &str = "first / second";
        writeln!(f, "{}: {}, {} iterations", self.workload, self.what, self.iterations)?;
        let width = self.endpoints.iter().map(|e| e.endpoint.len()).chain([RATIO.len(), "endpoint".len()]).max();
        let width = width.unwrap_or_default();
        writeln!(f, "{:<width$}  {:>9}  {:>9}  {:>9}", "endpoint", "p50", "p90", "max")?;
        for times in &self.endpoints {
            let Summary { p50, p90, max } = times.summary;
            let seconds = |s: f64| format!("{s:.3}s");
            writeln!(f, "{:<width$}  {:>9}  {:>9}  {:>9}", times.endpoint, seconds(p50), seconds(p90), seconds(max))?;
        }
        if let Some(Ratio { p50, p90, max }) = self.ratio {
            let times = |r: f64| format!("{r:.2}x");
            writeln!(f, "{RATIO:<width$}  {:>9}  {:>9}  {:>9}", times(p50), times(p90), times(max))?;
        }
        for note in &self.notes {
            writeln!(f, "note: {note}")?;
        }
        Ok(())
    }
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
             endpoint                  p50        p90        max\n\
             unix:///run/a.sock     0.100s     0.200s     0.200s\n"
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
        assert_eq!(report.ratio, Some(Ratio { p50: 2.0, p90: 2.0, max: 2.0 }));
        let text = report.to_string();
        assert!(text.contains("\nfirst / second          2.00x      2.00x      2.00x\n"), "{text}");
        assert!(text.ends_with("note: layers stayed\n"), "{text}");
        let json = serde_json::to_value(&report).unwrap();
        assert_eq!(json["endpoints"][1]["endpoint"], "unix:///run/b.sock");
        assert_eq!(json["endpoints"][1]["p90"], 0.8);
        assert_eq!(json["ratio"]["max"], 2.0);
    }
}
