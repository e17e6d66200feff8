//! Pod sysctls: only those the kernel keeps per namespace, and only where the pod has that
//! namespace of its own.

use std::collections::BTreeMap;

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum SysctlError {
    #[error("sysctl {0:?}: not a valid sysctl name")]
    BadName(String),
    #[error("sysctl {0}: not namespaced, so setting it would change the host")]
    NotNamespaced(String),
    #[error("sysctl {key}: the pod shares the host's {namespace} namespace, so setting it would change the host")]
    HostNamespace { key: String, namespace: &'static str },
    #[error("sysctl {key}: invalid value {value:?}: {why}")]
    BadValue { key: String, value: String, why: &'static str },
}

/// Which namespace a sysctl belongs to, by the kernel's own grouping.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scope {
    Ipc,
    Net,
}

/// Validated sysctls, keys in the dotted form, ready for the OCI spec where the runtime writes
/// each one inside the pod's namespaces.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Sysctls(BTreeMap<String, String>);

impl Sysctls {
    /// Checks every key and value; `host_network`/`host_ipc` say which namespaces the pod shares
    /// with the host.
    pub fn validate<'a>(
        requested: impl IntoIterator<Item = (&'a String, &'a String)>,
        host_network: bool,
        host_ipc: bool,
    ) -> Result<Sysctls, SysctlError> {
        let mut out = BTreeMap::new();
        for (key, value) in requested {
            // The kubelet accepts both `net.ipv4.x` and `net/ipv4/x`.
            let key = key.replace('/', ".");
            if !valid_name(&key) {
                return Err(SysctlError::BadName(key));
            }
            let scope = scope(&key).ok_or_else(|| SysctlError::NotNamespaced(key.clone()))?;
            match scope {
                Scope::Net if host_network => return Err(SysctlError::HostNamespace { key, namespace: "network" }),
                Scope::Ipc if host_ipc => return Err(SysctlError::HostNamespace { key, namespace: "IPC" }),
                _ => {}
            }
            check_value(&key, value)?;
            out.insert(key, value.clone());
        }
        Ok(Sysctls(out))
    }

    pub fn into_map(self) -> BTreeMap<String, String> {
        self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

fn valid_name(key: &str) -> bool {
    !key.is_empty()
        && key.len() <= 256
        && key
            .split('.')
            .all(|part| !part.is_empty() && part.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-'))
}

fn scope(key: &str) -> Option<Scope> {
    const IPC: [&str; 3] = ["kernel.msgmax", "kernel.msgmnb", "kernel.msgmni"];
    const IPC_MORE: [&str; 5] =
        ["kernel.sem", "kernel.shmall", "kernel.shmmax", "kernel.shmmni", "kernel.shm_rmid_forced"];
    if IPC.contains(&key) || IPC_MORE.contains(&key) || key.starts_with("fs.mqueue.") {
        Some(Scope::Ipc)
    } else if key.starts_with("net.") {
        Some(Scope::Net)
    } else {
        None
    }
}

/// A value is written to one file as it is; anything that could read as a second assignment
/// (CVE-2022-0811: `1+kernel.core_pattern=...`) or a second line is refused.
fn check_value(key: &str, value: &str) -> Result<(), SysctlError> {
    let bad = |why| Err(SysctlError::BadValue { key: key.to_owned(), value: value.to_owned(), why });
    if value.is_empty() {
        return bad("empty");
    }
    if value.len() > 4096 {
        return bad("longer than 4096 bytes");
    }
    if value.contains(['=', '+']) {
        return bad("'=' and '+' are not allowed in a sysctl value");
    }
    if value.chars().any(|c| c.is_control() && c != '\t') {
        return bad("control characters are not allowed");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(pairs: &[(&str, &str)], host_network: bool, host_ipc: bool) -> Result<Sysctls, SysctlError> {
        let owned: Vec<(String, String)> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Sysctls::validate(owned.iter().map(|(k, v)| (k, v)), host_network, host_ipc)
    }

    #[test]
    fn namespaced_sysctls_pass() {
        let ok = check(
            &[
                ("kernel.shm_rmid_forced", "1"),
                ("net.ipv4.ip_local_port_range", "1024 65000"),
                ("net/ipv4/ip_unprivileged_port_start", "0"),
                ("fs.mqueue.msg_max", "20"),
                ("kernel.sem", "250\t32000 100 128"),
            ],
            false,
            false,
        )
        .unwrap()
        .into_map();
        assert_eq!(ok["net.ipv4.ip_unprivileged_port_start"], "0");
        assert_eq!(ok.len(), 5);
    }

    #[test]
    fn host_wide_sysctls_are_refused() {
        for key in ["kernel.core_pattern", "vm.overcommit_memory", "kernel.shmX", "fs.file-max"] {
            assert!(matches!(check(&[(key, "1")], false, false), Err(SysctlError::NotNamespaced(_))), "{key}");
        }
    }

    #[test]
    fn shared_namespaces_make_their_sysctls_host_wide() {
        assert!(matches!(
            check(&[("net.ipv4.ip_forward", "1")], true, false),
            Err(SysctlError::HostNamespace { namespace: "network", .. })
        ));
        assert!(matches!(
            check(&[("kernel.shmmax", "1")], false, true),
            Err(SysctlError::HostNamespace { namespace: "IPC", .. })
        ));
        assert!(check(&[("kernel.shmmax", "1")], true, false).is_ok());
    }

    #[test]
    fn injected_assignments_are_refused() {
        for value in ["1+kernel.core_pattern=|/tmp/x", "1\nkernel.core_pattern=x", "1=2", ""] {
            assert!(
                matches!(check(&[("kernel.shm_rmid_forced", value)], false, false), Err(SysctlError::BadValue { .. })),
                "{value:?}"
            );
        }
        for key in ["kernel.shm_rmid_forced=1", "net..x", "net.ipv4.x y", "../net.x"] {
            assert!(matches!(check(&[(key, "1")], false, false), Err(SysctlError::BadName(_))), "{key:?}");
        }
    }
}
