//! OCI whiteout files, and the overlayfs form they are unpacked into: `dir/.wh.name` becomes a
//! 0:0 character device `dir/name`, and `dir/.wh..wh..opq` the `trusted.overlay.opaque` xattr on
//! `dir`.

use std::ffi::{CStr, CString};

const PREFIX: &[u8] = b".wh.";
const OPAQUE_MARKER: &[u8] = b".wh..wh..opq";

/// Xattrs overlayfs reads to redirect lookups, hide lower layers or fetch data from elsewhere
/// (`user.` ones when mounted with `userxattr`): only the unpacker itself may set them, never a
/// layer's own PAX records.
pub(super) const OVERLAY_XATTR_PREFIXES: [&[u8]; 2] = [b"trusted.overlay.", b"user.overlay."];
pub(super) const OPAQUE_XATTR: &CStr = c"trusted.overlay.opaque";
pub(super) const OPAQUE_VALUE: &[u8] = b"y";

#[derive(Debug, PartialEq, Eq)]
pub(super) enum Whiteout {
    /// Hides this name of the directory in the layers below.
    Hide(CString),
    /// Hides everything the layers below have in the directory.
    Opaque,
}

/// What the last component of an entry's path makes it, if it is a whiteout; the error is why a
/// whiteout is refused.
pub(super) fn classify(name: &CStr) -> Result<Option<Whiteout>, &'static str> {
    let name = name.to_bytes();
    let Some(hidden) = name.strip_prefix(PREFIX) else {
        return Ok(None);
    };
    if name == OPAQUE_MARKER {
        return Ok(Some(Whiteout::Opaque));
    }
    match hidden {
        b"" => Err("whiteout of an empty name"),
        b"." | b".." => Err("whiteout of \".\" or \"..\""),
        _ if hidden.starts_with(PREFIX) => Err("whiteout of a reserved \".wh.\" name"),
        _ => CString::new(hidden).map(|hidden| Some(Whiteout::Hide(hidden))).map_err(|_| "NUL byte in whiteout"),
    }
}

/// Whiteout names only mean something as the last component of an entry, so one as a directory
/// on the way or as a hard link target is refused.
pub(super) fn is_reserved(name: &CStr) -> bool {
    name.to_bytes().starts_with(PREFIX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies() {
        assert_eq!(classify(c"passwd"), Ok(None));
        assert_eq!(classify(c".wh"), Ok(None));
        assert_eq!(classify(c".whx"), Ok(None));
        assert_eq!(classify(c".wh.passwd"), Ok(Some(Whiteout::Hide(c"passwd".to_owned()))));
        assert_eq!(classify(c".wh..hidden"), Ok(Some(Whiteout::Hide(c".hidden".to_owned()))));
        assert_eq!(classify(c".wh..wh..opq"), Ok(Some(Whiteout::Opaque)));
        for refused in [c".wh.", c".wh..", c".wh...", c".wh..wh..wh..opq", c".wh..wh.plnk"] {
            assert!(classify(refused).is_err(), "{refused:?}");
        }
    }
}
