//! The suite's results: a line per case for people, JSON for machines.

use std::fmt;

use serde::Serialize;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "verdict", content = "reason", rename_all = "lowercase")]
pub enum Verdict {
    Pass,
    Fail(String),
    Skip(String),
}

#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    pub name: String,
    #[serde(flatten)]
    pub verdict: Verdict,
    pub seconds: f64,
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.verdict {
            Verdict::Pass => write!(f, "PASS {}", self.name),
            Verdict::Fail(why) => write!(f, "FAIL {}: {why}", self.name),
            Verdict::Skip(why) => write!(f, "SKIP {}: {why}", self.name),
        }
    }
}

#[derive(Debug, Default, Serialize)]
pub struct Report {
    pub outcomes: Vec<Outcome>,
}

impl Report {
    fn count(&self, pick: impl Fn(&Verdict) -> bool) -> usize {
        self.outcomes.iter().filter(|o| pick(&o.verdict)).count()
    }

    pub fn passed(&self) -> usize {
        self.count(|v| matches!(v, Verdict::Pass))
    }

    pub fn failed(&self) -> usize {
        self.count(|v| matches!(v, Verdict::Fail(_)))
    }

    pub fn skipped(&self) -> usize {
        self.count(|v| matches!(v, Verdict::Skip(_)))
    }

    /// The closing line: `N passed, N failed, N skipped`.
    pub fn summary(&self) -> String {
        format!("{} passed, {} failed, {} skipped", self.passed(), self.failed(), self.skipped())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_and_summary() {
        let outcome = |name: &str, verdict| Outcome { name: name.into(), verdict, seconds: 0.0 };
        let report = Report {
            outcomes: vec![
                outcome("a", Verdict::Pass),
                outcome("b", Verdict::Fail("broke".into())),
                outcome("c", Verdict::Skip("no AppArmor".into())),
                outcome("d", Verdict::Pass),
            ],
        };
        assert_eq!(report.outcomes[1].to_string(), "FAIL b: broke");
        assert_eq!(report.outcomes[2].to_string(), "SKIP c: no AppArmor");
        assert_eq!(report.summary(), "2 passed, 1 failed, 1 skipped");
        let json = serde_json::to_value(&report).unwrap();
        assert_eq!(json["outcomes"][1]["verdict"], "fail");
        assert_eq!(json["outcomes"][1]["reason"], "broke");
        assert_eq!(json["outcomes"][0]["verdict"], "pass");
    }
}
