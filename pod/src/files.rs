//! The files a pod's containers bind-mount: `/etc/hostname`, `/etc/hosts`, `/etc/resolv.conf`.

use std::fs;
use std::io;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crisp_runtime::persist;

#[derive(Debug, thiserror::Error)]
pub enum FilesError {
    #[error("invalid hostname {0:?}: want at most 64 letters, digits, '-' and '.'")]
    Hostname(String),
    #[error("invalid DNS {what} {value:?}: {why}")]
    Dns { what: &'static str, value: String, why: &'static str },
    #[error("writing {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
}

/// The pod's resolver settings, as the kubelet computed them from the pod's DNS policy.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DnsConfig {
    pub servers: Vec<String>,
    pub searches: Vec<String>,
    pub options: Vec<String>,
}

impl DnsConfig {
    /// Nothing asked for: the pod gets the host's resolver, as with Docker's default.
    pub fn is_empty(&self) -> bool {
        self.servers.is_empty() && self.searches.is_empty() && self.options.is_empty()
    }

    pub fn validate(&self) -> Result<(), FilesError> {
        let bad = |what, value: &str, why| Err(FilesError::Dns { what, value: value.to_owned(), why });
        for server in &self.servers {
            if server.parse::<IpAddr>().is_err() {
                return bad("server", server, "not an IP address");
            }
        }
        for (what, list) in [("search", &self.searches), ("option", &self.options)] {
            for value in list {
                if value.is_empty() || value.len() > 253 || value.chars().any(|c| c.is_whitespace() || c.is_control()) {
                    return bad(what, value, "empty, too long, or holding whitespace");
                }
            }
        }
        Ok(())
    }

    fn render(&self) -> String {
        let mut out = String::new();
        if !self.searches.is_empty() {
            out += &format!("search {}\n", self.searches.join(" "));
        }
        for server in &self.servers {
            out += &format!("nameserver {server}\n");
        }
        if !self.options.is_empty() {
            out += &format!("options {}\n", self.options.join(" "));
        }
        out
    }
}

pub fn validate_hostname(hostname: &str) -> Result<(), FilesError> {
    let ok = !hostname.is_empty()
        && hostname.len() <= 64
        && hostname.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_');
    if ok { Ok(()) } else { Err(FilesError::Hostname(hostname.to_owned())) }
}

/// Where a pod's files live, one directory per pod.
#[derive(Debug, Clone)]
pub struct PodFiles {
    dir: PathBuf,
}

impl PodFiles {
    pub fn new(dir: PathBuf) -> PodFiles {
        PodFiles { dir }
    }

    pub fn hostname(&self) -> PathBuf {
        self.dir.join("hostname")
    }

    pub fn hosts(&self) -> PathBuf {
        self.dir.join("hosts")
    }

    pub fn resolv_conf(&self) -> PathBuf {
        self.dir.join("resolv.conf")
    }

    /// Writes all three. A pod on the host network sees the host's hosts file and, without DNS
    /// settings of its own, every pod sees the host's resolver.
    pub fn write(&self, hostname: &str, dns: &DnsConfig, ips: &[IpAddr], host_network: bool) -> Result<(), FilesError> {
        let write = |path: PathBuf, text: &[u8]| {
            persist::write(&path, text, 0o644).map_err(|source| FilesError::Io { path: path.clone(), source })
        };
        write(self.hostname(), format!("{hostname}\n").as_bytes())?;
        let hosts = if host_network { copy_of("/etc/hosts")? } else { pod_hosts(hostname, ips).into_bytes() };
        write(self.hosts(), &hosts)?;
        let resolv = if dns.is_empty() { copy_of("/etc/resolv.conf")? } else { dns.render().into_bytes() };
        write(self.resolv_conf(), &resolv)
    }
}

/// A host file, or nothing if the host has none: a pod must not fail for a bare host.
fn copy_of(path: &str) -> Result<Vec<u8>, FilesError> {
    const MAX: u64 = 1 << 20;
    match fs::File::open(path) {
        Ok(file) => {
            use std::io::Read;
            let mut bytes = Vec::new();
            file.take(MAX)
                .read_to_end(&mut bytes)
                .map_err(|source| FilesError::Io { path: Path::new(path).into(), source })?;
            Ok(bytes)
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(source) => Err(FilesError::Io { path: Path::new(path).into(), source }),
    }
}

fn pod_hosts(hostname: &str, ips: &[IpAddr]) -> String {
    let mut out = String::from(
        "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\n\
         fe00::0\tip6-mcastprefix\nfe00::1\tip6-allnodes\nfe00::2\tip6-allrouters\n",
    );
    for ip in ips {
        out += &format!("{ip}\t{hostname}\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_what_the_pod_asked_for() {
        let dir = tempfile::tempdir().unwrap();
        let files = PodFiles::new(dir.path().to_owned());
        let dns = DnsConfig {
            servers: vec!["10.96.0.10".into()],
            searches: vec!["default.svc.cluster.local".into(), "svc.cluster.local".into()],
            options: vec!["ndots:5".into()],
        };
        dns.validate().unwrap();
        files.write("web-0", &dns, &["10.85.0.7".parse().unwrap()], false).unwrap();
        assert_eq!(fs::read_to_string(files.hostname()).unwrap(), "web-0\n");
        assert_eq!(
            fs::read_to_string(files.resolv_conf()).unwrap(),
            "search default.svc.cluster.local svc.cluster.local\nnameserver 10.96.0.10\noptions ndots:5\n"
        );
        let hosts = fs::read_to_string(files.hosts()).unwrap();
        assert!(hosts.starts_with("127.0.0.1\tlocalhost\n"), "{hosts}");
        assert!(hosts.ends_with("10.85.0.7\tweb-0\n"), "{hosts}");
    }

    #[test]
    fn no_dns_settings_means_the_hosts_resolver() {
        let dir = tempfile::tempdir().unwrap();
        let files = PodFiles::new(dir.path().to_owned());
        files.write("h", &DnsConfig::default(), &[], true).unwrap();
        assert_eq!(fs::read(files.resolv_conf()).unwrap(), fs::read("/etc/resolv.conf").unwrap_or_default());
        assert_eq!(fs::read(files.hosts()).unwrap(), fs::read("/etc/hosts").unwrap_or_default());
    }

    #[test]
    fn refuses_lines_smuggled_into_the_files() {
        for dns in [
            DnsConfig { servers: vec!["1.1.1.1\nnameserver 6.6.6.6".into()], ..Default::default() },
            DnsConfig { searches: vec!["a b".into()], ..Default::default() },
            DnsConfig { options: vec!["ndots:5\nsearch evil".into()], ..Default::default() },
        ] {
            assert!(matches!(dns.validate(), Err(FilesError::Dns { .. })), "{dns:?}");
        }
        for bad in ["", "a b", "x\ny", &"h".repeat(65)] {
            assert!(validate_hostname(bad).is_err(), "{bad:?}");
        }
        validate_hostname("web-0.example").unwrap();
    }
}
