//! The conformance suite: named cases run one after another against a CRI endpoint, each
//! passing, failing with a reason, or skipped with a reason (never counted as passed).

mod cases;
mod context;
pub(crate) mod pod_config;
mod report;
mod selection;
mod test_images;

use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, Instant};

pub use context::Context;
pub use report::{Outcome, Report, Verdict};
pub use selection::Selection;
pub(crate) use test_images::is_image_id;
pub use test_images::{DockerIoNames, TestImages, TestImagesError};

/// What a case's body returns: `Ok` passes it, `Err` says why it stopped short.
pub type CaseResult = Result<(), Stop>;

/// Why a case did not pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stop {
    /// The runtime did something wrong.
    Fail(String),
    /// The case cannot run here: this run or host lacks something it needs.
    Skip(String),
}

/// A check's words are a failure, so that `?` works on `Result<_, String>`.
impl From<String> for Stop {
    fn from(why: String) -> Self {
        Stop::Fail(why)
    }
}

impl From<&str> for Stop {
    fn from(why: &str) -> Self {
        Stop::Fail(why.to_owned())
    }
}

type CaseFn = for<'a> fn(&'a mut Context) -> Pin<Box<dyn Future<Output = CaseResult> + Send + 'a>>;

pub struct Case {
    pub name: &'static str,
    run: CaseFn,
}

/// Every case, in the order they run.
pub fn cases() -> Vec<Case> {
    cases::all()
}

/// Time a single case may take before it fails as hung.
const CASE_TIMEOUT: Duration = Duration::from_secs(120);

/// Runs the selected cases, calling `each` as every case ends. Pods a case made and images it
/// pulled are removed after it, whatever its verdict, so that the next case starts from the same
/// runtime.
pub async fn run(context: &mut Context, selection: &Selection, mut each: impl FnMut(&Outcome)) -> Report {
    let mut report = Report::default();
    for case in cases().into_iter().filter(|c| selection.selects(c.name)) {
        let started = Instant::now();
        let verdict = match tokio::time::timeout(CASE_TIMEOUT, (case.run)(context)).await {
            Ok(Ok(())) => Verdict::Pass,
            Ok(Err(Stop::Skip(why))) => Verdict::Skip(why),
            Ok(Err(Stop::Fail(why))) => Verdict::Fail(why),
            Err(_) => Verdict::Fail(format!("did not finish within {CASE_TIMEOUT:?}")),
        };
        let verdict = match (verdict, context.clean_up().await) {
            (verdict, Ok(())) => verdict,
            (Verdict::Fail(why), Err(cleanup)) => Verdict::Fail(format!("{why}; then cleaning up: {cleanup}")),
            (_, Err(cleanup)) => Verdict::Fail(format!("cleaning up: {cleanup}")),
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
    fn case_names_are_unique() {
        let mut names: Vec<_> = cases().iter().map(|c| c.name).collect();
        let count = names.len();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), count);
    }
}
