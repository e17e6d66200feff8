//! How low an `oom_score_adj` this host lets crisp set.
//!
//! Lowering a process's `oom_score_adj` below what the daemon itself has needs
//! CAP_SYS_RESOURCE, which some hosts (user namespaces, restricted sandboxes) withhold. The
//! kubelet asks for -998 for sandboxes; on such hosts the value is clamped instead of failing
//! the pod.

use std::fs;
use std::io;

const SELF: &str = "/proc/self/oom_score_adj";
const MIN: i32 = -1000;
const MAX: i32 = 1000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OomScoreAdjPolicy {
    /// The lowest value crisp sets; `None` when any value in range is allowed.
    floor: Option<i32>,
}

impl OomScoreAdjPolicy {
    /// Probes the host: the daemon's own score, and whether it may go below it. `restrict`
    /// forces the floor even where the host would allow lower values.
    pub fn detect(restrict: bool) -> io::Result<Self> {
        let own = read_own()?;
        let floor = (restrict || !can_lower(own)?).then_some(own);
        Ok(OomScoreAdjPolicy { floor })
    }

    pub fn floor(&self) -> Option<i32> {
        self.floor
    }

    /// The value to set for a request: within the kernel's range and never below the floor.
    pub fn clamp(&self, requested: i32) -> i32 {
        let in_range = requested.clamp(MIN, MAX);
        self.floor.map_or(in_range, |floor| in_range.max(floor))
    }
}

fn read_own() -> io::Result<i32> {
    let text = fs::read_to_string(SELF)?;
    text.trim().parse().map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("{SELF}: {e}")))
}

/// Tries to lower the daemon's own score by one and puts it back; raising is always allowed.
fn can_lower(own: i32) -> io::Result<bool> {
    if own == MIN {
        return Ok(true);
    }
    match fs::write(SELF, (own - 1).to_string()) {
        Ok(()) => {
            fs::write(SELF, own.to_string())?;
            Ok(true)
        }
        Err(e) if matches!(e.raw_os_error(), Some(libc::EACCES) | Some(libc::EPERM)) => Ok(false),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clamp_keeps_the_floor_and_the_kernel_range() {
        let free = OomScoreAdjPolicy { floor: None };
        assert_eq!(free.clamp(-998), -998);
        assert_eq!(free.clamp(-5000), MIN);
        assert_eq!(free.clamp(i32::MAX), MAX);

        let floored = OomScoreAdjPolicy { floor: Some(0) };
        assert_eq!(floored.clamp(-998), 0);
        assert_eq!(floored.clamp(500), 500);
    }

    #[test]
    fn detect_matches_what_the_host_allows() {
        let own = read_own().unwrap();
        let policy = OomScoreAdjPolicy::detect(false).unwrap();
        // Whatever the host says, a detected floor is the daemon's own score and the probe
        // leaves that score as it found it.
        assert!(policy.floor().is_none_or(|f| f == own));
        assert_eq!(read_own().unwrap(), own);
        assert_eq!(OomScoreAdjPolicy::detect(true).unwrap().floor(), Some(own));
    }
}
