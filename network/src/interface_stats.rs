//! Traffic counters of a pod's interfaces, from `/proc/<pid>/net/dev` of a process in the pod's
//! network namespace: procfs shows the namespace of the process it describes, so no setns.

use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum InterfaceStatsError {
    #[error("reading {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{path}: unparsable line {line:?}")]
    Parse { path: PathBuf, line: String },
}

/// Cumulative counters of one interface.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InterfaceStats {
    pub name: String,
    pub rx_bytes: u64,
    pub rx_packets: u64,
    pub rx_errors: u64,
    pub rx_dropped: u64,
    pub tx_bytes: u64,
    pub tx_packets: u64,
    pub tx_errors: u64,
    pub tx_dropped: u64,
}

/// The interfaces of the network namespace `pid` is in, loopback left out (its traffic never
/// leaves the pod). A blocking read.
pub fn read_interfaces(pid: u32) -> Result<Vec<InterfaceStats>, InterfaceStatsError> {
    let path = PathBuf::from(format!("/proc/{pid}/net/dev"));
    let text =
        std::fs::read_to_string(&path).map_err(|source| InterfaceStatsError::Read { path: path.clone(), source })?;
    parse(&path, &text)
}

/// Two header lines, then `name: rx bytes packets errs drop fifo frame compressed multicast tx
/// bytes packets errs drop ...`.
fn parse(path: &Path, text: &str) -> Result<Vec<InterfaceStats>, InterfaceStatsError> {
    let mut found = Vec::new();
    for line in text.lines().skip(2) {
        let bad = || InterfaceStatsError::Parse { path: path.to_owned(), line: line.to_owned() };
        let (name, counters) = line.split_once(':').ok_or_else(bad)?;
        let name = name.trim();
        if name == "lo" {
            continue;
        }
        let n: Vec<u64> = counters.split_whitespace().map(str::parse).collect::<Result<_, _>>().map_err(|_| bad())?;
        if n.len() < 12 {
            return Err(bad());
        }
        found.push(InterfaceStats {
            name: name.to_owned(),
            rx_bytes: n[0],
            rx_packets: n[1],
            rx_errors: n[2],
            rx_dropped: n[3],
            tx_bytes: n[8],
            tx_packets: n[9],
            tx_errors: n[10],
            tx_dropped: n[11],
        });
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NET_DEV: &str = "\
Inter-|   Receive                                                |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
    lo:     140       2    0    0    0     0          0         0      140       2    0    0    0     0       0          0
  eth0: 1048576     900    1    2    0     0          0         0     4096      30    3    4    0     0       0          0
";

    #[test]
    fn counters_without_loopback() {
        let found = parse(Path::new("net/dev"), NET_DEV).unwrap();
        let eth0 = InterfaceStats {
            name: "eth0".into(),
            rx_bytes: 1048576,
            rx_packets: 900,
            rx_errors: 1,
            rx_dropped: 2,
            tx_bytes: 4096,
            tx_packets: 30,
            tx_errors: 3,
            tx_dropped: 4,
        };
        assert_eq!(found, vec![eth0]);
    }

    #[test]
    fn truncated_line_is_an_error() {
        let text = format!("{}  eth1: 1 2 3\n", NET_DEV);
        assert!(matches!(parse(Path::new("net/dev"), &text), Err(InterfaceStatsError::Parse { .. })));
    }

    #[test]
    fn own_namespace_has_loopback_left_out() {
        let found = read_interfaces(std::process::id()).unwrap();
        assert!(found.iter().all(|i| i.name != "lo"));
    }
}
