//! Entry paths, checked and split into the single names that the `*at` calls take, one directory
//! level at a time.
//!
//! Absolute paths are refused rather than stripped of their leading `/`: image builders never
//! write them, and for hard link targets stripping would silently retarget the link. Every `..`
//! is refused, even one that stays inside the layer, so no path ever needs resolving.

use std::ffi::CString;

use super::error::UnpackError;

/// Longer paths could not be resolved from inside a container anyway; the cap also bounds how
/// deep a layer can nest directories, and so the descriptors and memory a walk or removal needs.
const MAX_PATH: usize = libc::PATH_MAX as usize;

enum Refusal {
    Absolute,
    ParentComponent,
    Invalid(&'static str),
}

/// The components of an entry's path. `.` and empty components (`./a`, `a//b`, a trailing `/`)
/// are dropped, so the layer root is the empty list.
pub(super) fn entry(raw: &[u8]) -> Result<Vec<CString>, UnpackError> {
    split(raw).map_err(|refusal| {
        let path = lossy(raw);
        match refusal {
            Refusal::Absolute => UnpackError::AbsolutePath { path },
            Refusal::ParentComponent => UnpackError::ParentComponent { path },
            Refusal::Invalid(reason) => UnpackError::InvalidPath { path, reason },
        }
    })
}

/// The components of a hard link's target, which names an earlier entry of the same layer.
pub(super) fn link_target(raw: &[u8], path: &str) -> Result<Vec<CString>, UnpackError> {
    let target = split(raw).map_err(|refusal| match refusal {
        Refusal::Absolute | Refusal::ParentComponent => {
            UnpackError::LinkOutside { path: path.to_owned(), target: lossy(raw) }
        }
        Refusal::Invalid(reason) => UnpackError::InvalidPath { path: path.to_owned(), reason },
    })?;
    if target.is_empty() {
        return Err(UnpackError::InvalidPath { path: path.to_owned(), reason: "hard link to the layer root" });
    }
    Ok(target)
}

/// The normalised path of `components`, for messages and as a key.
pub(super) fn join(components: &[CString]) -> Vec<u8> {
    let mut joined = Vec::new();
    for (i, component) in components.iter().enumerate() {
        if i > 0 {
            joined.push(b'/');
        }
        joined.extend_from_slice(component.as_bytes());
    }
    joined
}

pub(super) fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn split(raw: &[u8]) -> Result<Vec<CString>, Refusal> {
    if raw.starts_with(b"/") {
        return Err(Refusal::Absolute);
    }
    if raw.len() > MAX_PATH {
        return Err(Refusal::Invalid("longer than PATH_MAX"));
    }
    let mut components = Vec::new();
    for component in raw.split(|&b| b == b'/') {
        match component {
            b"" | b"." => {}
            b".." => return Err(Refusal::ParentComponent),
            name => components.push(CString::new(name).map_err(|_| Refusal::Invalid("NUL byte in path"))?),
        }
    }
    Ok(components)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(raw: &str) -> Vec<String> {
        entry(raw.as_bytes()).unwrap().iter().map(|c| c.to_str().unwrap().to_owned()).collect()
    }

    #[test]
    fn normalises_harmless_spellings() {
        assert_eq!(names("usr/bin/env"), ["usr", "bin", "env"]);
        assert_eq!(names("./usr//bin/./env/"), ["usr", "bin", "env"]);
        assert!(names("./").is_empty());
        assert!(names("").is_empty());
        assert_eq!(names("..a/b..c/..."), ["..a", "b..c", "..."]);
    }

    #[test]
    fn refuses_escapes() {
        assert!(matches!(entry(b"/etc/passwd"), Err(UnpackError::AbsolutePath { .. })));
        assert!(matches!(entry(b"../x"), Err(UnpackError::ParentComponent { .. })));
        assert!(matches!(entry(b"a/../../x"), Err(UnpackError::ParentComponent { .. })));
        assert!(matches!(entry(b"a/../b"), Err(UnpackError::ParentComponent { .. })));
        assert!(matches!(entry(b"a\0b"), Err(UnpackError::InvalidPath { .. })));
        assert!(matches!(entry("a/".repeat(3000).as_bytes()), Err(UnpackError::InvalidPath { .. })));
    }

    #[test]
    fn link_targets() {
        assert_eq!(link_target(b"./bin/sh", "h").unwrap().len(), 2);
        for target in [&b"/etc/passwd"[..], b"../x", b"a/../../x"] {
            assert!(matches!(link_target(target, "h"), Err(UnpackError::LinkOutside { .. })), "{target:?}");
        }
        assert!(matches!(link_target(b"./", "h"), Err(UnpackError::InvalidPath { .. })));
    }

    #[test]
    fn joins() {
        assert_eq!(join(&entry(b"./a//b/").unwrap()), b"a/b");
        assert_eq!(join(&[]), b"");
    }
}
