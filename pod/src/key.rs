//! What identifies a pod to the kubelet: its metadata, and the sandbox ID crisp gives it.

use std::fmt;

use serde::{Deserialize, Serialize};

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("pod metadata: {0} must not be empty")]
    Empty(&'static str),
    #[error("pod metadata: {field} {value:?} is not allowed: {why}")]
    Invalid { field: &'static str, value: String, why: &'static str },
}

/// Name, namespace, UID and attempt: the kubelet retries RunPodSandbox with the same four and
/// starts a new attempt with a new number.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PodKey {
    pub name: String,
    pub namespace: String,
    pub uid: String,
    pub attempt: u32,
}

impl PodKey {
    pub fn new(name: &str, namespace: &str, uid: &str, attempt: u32) -> Result<PodKey, KeyError> {
        for (field, value) in [("name", name), ("namespace", namespace), ("uid", uid)] {
            if value.is_empty() {
                return Err(KeyError::Empty(field));
            }
            // These end up in file contents, CNI_ARGS (`;`/`=` separated) and logs.
            if value.len() > 253 {
                return Err(KeyError::Invalid { field, value: value.into(), why: "longer than 253 bytes" });
            }
            if value.chars().any(|c| c.is_control() || c == ';' || c == '=' || c == '/') {
                return Err(KeyError::Invalid {
                    field,
                    value: value.into(),
                    why: "control characters, ';', '=' and '/' are not allowed",
                });
            }
        }
        Ok(PodKey { name: name.into(), namespace: namespace.into(), uid: uid.into(), attempt })
    }
}

impl fmt::Display for PodKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{} (uid {}, attempt {})", self.namespace, self.name, self.uid, self.attempt)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn needs_every_part() {
        assert!(PodKey::new("web", "default", "u1", 0).is_ok());
        assert!(matches!(PodKey::new("", "default", "u1", 0), Err(KeyError::Empty("name"))));
        assert!(matches!(PodKey::new("web", "", "u1", 0), Err(KeyError::Empty("namespace"))));
        assert!(matches!(PodKey::new("web", "default", "", 0), Err(KeyError::Empty("uid"))));
    }

    #[test]
    fn refuses_separators_that_would_forge_cni_args() {
        for bad in ["a;K8S_POD_NAME=b", "a=b", "a\nb", "../x"] {
            assert!(matches!(PodKey::new(bad, "ns", "u", 0), Err(KeyError::Invalid { .. })), "{bad:?}");
        }
    }
}
