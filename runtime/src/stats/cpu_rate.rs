//! CPU use as a rate: the kernel keeps only cumulative time, so the rate is the difference
//! between two reads, and the previous read of each cgroup is kept in memory (as containerd
//! does).

use std::collections::HashMap;
use std::sync::Mutex;

/// Windows shorter than this (two clients polling at once) would make a noisy rate: they are
/// measured against the older sample, which is kept.
const MIN_WINDOW_NS: i64 = 1_000_000_000;

#[derive(Debug, Default)]
pub struct CpuRates {
    last: Mutex<HashMap<String, Sample>>,
}

#[derive(Debug, Clone, Copy)]
struct Sample {
    at_ns: i64,
    total_ns: u64,
}

impl CpuRates {
    /// Nanoseconds of CPU per second (nano-cores) since the previous read of `key`; none for
    /// the first read.
    pub fn rate(&self, key: &str, at_ns: i64, total_ns: u64) -> Option<u64> {
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        let sample = Sample { at_ns, total_ns };
        let Some(previous) = last.get(key).copied() else {
            last.insert(key.to_owned(), sample);
            return None;
        };
        let window = at_ns - previous.at_ns;
        if window <= 0 || total_ns < previous.total_ns {
            last.insert(key.to_owned(), sample);
            return None;
        }
        if window >= MIN_WINDOW_NS {
            last.insert(key.to_owned(), sample);
        }
        let used = u128::from(total_ns - previous.total_ns);
        Some((used * 1_000_000_000 / window as u128) as u64)
    }

    /// Forgets the cgroups no longer asked about (removed containers and pods).
    pub fn retain(&self, keep: impl Fn(&str) -> bool) {
        self.last.lock().unwrap_or_else(|e| e.into_inner()).retain(|key, _| keep(key));
    }
}
