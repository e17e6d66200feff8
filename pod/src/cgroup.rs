//! Where a pod's pause process goes in the cgroup tree, in the form the runtime's
//! `linux.cgroupsPath` takes for each cgroup manager.

use crisp_runtime::CgroupManager;

#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    #[error("invalid cgroup_parent {0:?}: want an absolute path without '..' for the cgroupfs driver")]
    Cgroupfs(String),
    #[error("invalid cgroup_parent {0:?}: want a systemd slice name such as kubepods-burstable.slice")]
    Systemd(String),
}

/// Pods the kubelet gives no parent (crictl, tests) are grouped under one of crisp's own.
const DEFAULT_CGROUPFS_PARENT: &str = "/crisp";
const DEFAULT_SLICE: &str = "system.slice";

/// Where a pod's process goes: `id` is the sandbox's, or one of its containers'.
pub fn cgroups_path(manager: CgroupManager, parent: &str, id: &impl std::fmt::Display) -> Result<String, CgroupError> {
    match manager {
        CgroupManager::Cgroupfs => {
            let parent = if parent.is_empty() { DEFAULT_CGROUPFS_PARENT } else { parent };
            let ok = parent.starts_with('/')
                && !parent.split('/').any(|c| c == ".." || c == ".")
                && !parent.chars().any(char::is_control);
            if !ok {
                return Err(CgroupError::Cgroupfs(parent.to_owned()));
            }
            Ok(format!("{}/crisp-{id}", parent.trim_end_matches('/')))
        }
        CgroupManager::Systemd => {
            let parent = if parent.is_empty() { DEFAULT_SLICE } else { parent };
            let ok = parent.ends_with(".slice")
                && !parent.contains(['/', ':'])
                && parent.bytes().all(|b| b.is_ascii_graphic());
            if !ok {
                return Err(CgroupError::Systemd(parent.to_owned()));
            }
            Ok(format!("{parent}:crisp:{id}"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SandboxId;

    #[test]
    fn paths_for_each_manager() {
        let id = SandboxId::random();
        assert_eq!(
            cgroups_path(CgroupManager::Cgroupfs, "/kubepods/besteffort/pod1", &id).unwrap(),
            format!("/kubepods/besteffort/pod1/crisp-{id}")
        );
        assert_eq!(cgroups_path(CgroupManager::Cgroupfs, "", &id).unwrap(), format!("/crisp/crisp-{id}"));
        assert_eq!(
            cgroups_path(CgroupManager::Systemd, "kubepods-besteffort.slice", &id).unwrap(),
            format!("kubepods-besteffort.slice:crisp:{id}")
        );
        for bad in ["kubepods", "/a/../b", "./x"] {
            assert!(cgroups_path(CgroupManager::Cgroupfs, bad, &id).is_err(), "{bad}");
        }
        for bad in ["/kubepods", "a:b.slice", "kubepods"] {
            assert!(cgroups_path(CgroupManager::Systemd, bad, &id).is_err(), "{bad}");
        }
    }
}
