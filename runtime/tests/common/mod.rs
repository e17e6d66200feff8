//! What the monitor's root tests share: waiting for the monitor, and reading /proc.

use std::fs;
use std::path::Path;
use std::thread::sleep;
use std::time::{Duration, Instant};

use crisp_runtime::monitor::{ExitRecord, read_exit};

pub fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        sleep(Duration::from_millis(20));
    }
}

pub fn wait_exit(path: &Path) -> ExitRecord {
    let mut record = None;
    wait_until("the exit file is written", || {
        record = read_exit(path).unwrap();
        record.is_some()
    });
    record.unwrap()
}

/// What a process's descriptors point at, in fd order.
pub fn fd_targets(pid: u32) -> Vec<String> {
    let mut fds: Vec<(u32, String)> = fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let target = fs::read_link(e.path()).unwrap().to_string_lossy().into_owned();
            (e.file_name().to_str().unwrap().parse().unwrap(), target)
        })
        .collect();
    fds.sort();
    fds.into_iter().map(|(_, target)| target).collect()
}
