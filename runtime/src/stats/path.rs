//! From a container's `linux.cgroupsPath` to its directory in the cgroup tree, as runc maps it.

use std::path::PathBuf;

use super::StatsError;

/// The cgroup's directory relative to the hierarchy's root: a cgroupfs path as it is, and the
/// systemd driver's `slice:prefix:name` as the unit `prefix-name.scope` under the slice's
/// nesting (`a-b.slice` lives in `a.slice/a-b.slice`).
pub fn cgroup_dir(cgroups_path: &str) -> Result<PathBuf, StatsError> {
    let invalid = || StatsError::InvalidPath(cgroups_path.to_owned());
    let dir = match cgroups_path.split(':').collect::<Vec<_>>()[..] {
        [path] => PathBuf::from(path.strip_prefix('/').ok_or_else(invalid)?),
        [slice, prefix, name] => {
            let mut dir = expand_slice(slice).ok_or_else(invalid)?;
            if name.ends_with(".slice") {
                dir.push(name);
            } else if prefix.is_empty() {
                dir.push(format!("{name}.scope"));
            } else {
                dir.push(format!("{prefix}-{name}.scope"));
            }
            dir
        }
        _ => return Err(invalid()),
    };
    if dir.components().any(|c| !matches!(c, std::path::Component::Normal(_))) {
        return Err(invalid());
    }
    Ok(dir)
}

fn expand_slice(slice: &str) -> Option<PathBuf> {
    let slice = if slice.is_empty() { "system.slice" } else { slice };
    let base = slice.strip_suffix(".slice")?;
    if slice == "-.slice" {
        return Some(PathBuf::new());
    }
    if base.is_empty() || base.contains('/') || base.starts_with('-') || base.ends_with('-') || base.contains("--") {
        return None;
    }
    let mut dir = PathBuf::new();
    let mut prefix = String::new();
    for part in base.split('-') {
        prefix.push_str(part);
        dir.push(format!("{prefix}.slice"));
        prefix.push('-');
    }
    Some(dir)
}
