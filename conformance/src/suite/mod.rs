//! The conformance suite: named cases run one after another against a CRI endpoint, each
//! passing, failing with a reason, or skipped with a reason (never counted as passed).

mod cases;
mod report;

use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, Instant};

pub use report::{Outcome, Report, Verdict};

use crate::client::CriClient;

/// What a case's body returns: `Err` fails it, `Skip` says why it cannot run here.
pub type CaseResult = Result<Ran, String>;

pub enum Ran {
    Passed,
    Skipped(String),
}

type CaseFn = for<'a> fn(&'a mut CriClient) -> Pin<Box<dyn Future<Output = CaseResult> + Send + 'a>>;

pub struct Case {
    pub name: &'static str,
    run: CaseFn,
}

/// Every case, in the order they run.
pub fn cases() -> Vec<Case> {
    cases::all()
}

/// Which cases run: a case runs when it matches some `focus` (or there is none) and no `skip`.
/// Both match substrings of case names.
#[derive(Debug, Clone, Default)]
pub struct Selection {
    pub focus: Vec<String>,
    pub skip: Vec<String>,
}

impl Selection {
    fn selects(&self, name: &str) -> bool {
        (self.focus.is_empty() || self.focus.iter().any(|f| name.contains(f.as_str())))
            && !self.skip.iter().any(|s| name.contains(s.as_str()))
    }
}

/// Time a single case may take before it fails as hung.
const CASE_TIMEOUT: Duration = Duration::from_secs(120);

/// Runs the selected cases, calling `each` as every case ends.
pub async fn run(client: &mut CriClient, selection: &Selection, mut each: impl FnMut(&Outcome)) -> Report {
    let mut report = Report::default();
    for case in cases().into_iter().filter(|c| selection.selects(c.name)) {
        let started = Instant::now();
        let verdict = match tokio::time::timeout(CASE_TIMEOUT, (case.run)(client)).await {
            Ok(Ok(Ran::Passed)) => Verdict::Pass,
            Ok(Ok(Ran::Skipped(why))) => Verdict::Skip(why),
            Ok(Err(why)) => Verdict::Fail(why),
            Err(_) => Verdict::Fail(format!("did not finish within {CASE_TIMEOUT:?}")),
        };
        let outcome = Outcome { name: case.name.to_owned(), verdict, seconds: started.elapsed().as_secs_f64() };
        each(&outcome);
        report.outcomes.push(outcome);
    }
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selection_by_substring() {
        let all = Selection::default();
        assert!(all.selects("runtime/version"));
        let focus = Selection { focus: vec!["version".into()], skip: vec![] };
        assert!(focus.selects("runtime/version") && !focus.selects("runtime/status"));
        let skip = Selection { focus: vec![], skip: vec!["status".into()] };
        assert!(skip.selects("runtime/version") && !skip.selects("runtime/status"));
    }

    #[test]
    fn case_names_are_unique() {
        let mut names: Vec<_> = cases().iter().map(|c| c.name).collect();
        let count = names.len();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), count);
    }
}
