//! An entry's metadata, from its tar header and PAX records, and setting it on what the entry
//! became without following a symlink.

use std::ffi::{CStr, CString};
use std::io::Read;
use std::os::fd::BorrowedFd;

use nix::sys::stat::Mode;
use nix::sys::time::TimeSpec;
use nix::unistd::{Gid, Uid};

use super::error::UnpackError;
use super::fs;
use super::whiteout::OVERLAY_XATTR_PREFIXES;

const XATTR_RECORD: &[u8] = b"SCHILY.xattr.";
const MTIME_RECORD: &[u8] = b"mtime";

pub(super) struct Meta {
    mode: Mode,
    uid: Uid,
    gid: Gid,
    mtime: TimeSpec,
    xattrs: Vec<(CString, Vec<u8>)>,
}

impl Meta {
    pub(super) fn read<R: Read>(entry: &mut tar::Entry<'_, R>, path: &str) -> Result<Meta, UnpackError> {
        let header = entry.header();
        let field = |name: &str, value: std::io::Result<u64>| {
            value.map_err(|e| UnpackError::corrupt(path, format!("{name}: {e}")))
        };
        let mode = field("mode", header.mode().map(u64::from))?;
        let id = |name: &str, value| {
            let value = field(name, value)?;
            u32::try_from(value).map_err(|_| UnpackError::corrupt(path, format!("{name} {value} out of range")))
        };
        let uid = Uid::from_raw(id("uid", header.uid())?);
        let gid = Gid::from_raw(id("gid", header.gid())?);
        let mtime = field("mtime", header.mtime())?;
        let mtime =
            i64::try_from(mtime).map_err(|_| UnpackError::corrupt(path, format!("mtime {mtime} out of range")))?;
        let mut meta = Meta {
            mode: Mode::from_bits_truncate((mode & 0o7777) as libc::mode_t),
            uid,
            gid,
            mtime: TimeSpec::new(mtime, 0),
            xattrs: Vec::new(),
        };
        let Some(records) =
            entry.pax_extensions().map_err(|source| UnpackError::Corrupt { path: path.to_owned(), source })?
        else {
            return Ok(meta);
        };
        for record in records {
            let record = record.map_err(|source| UnpackError::Corrupt { path: path.to_owned(), source })?;
            let (key, value) = (record.key_bytes(), record.value_bytes());
            if key == MTIME_RECORD {
                meta.mtime = pax_time(value).ok_or_else(|| {
                    UnpackError::corrupt(path, format!("PAX mtime {:?}", String::from_utf8_lossy(value)))
                })?;
            } else if let Some(name) = key.strip_prefix(XATTR_RECORD) {
                if OVERLAY_XATTR_PREFIXES.iter().any(|prefix| name.starts_with(prefix)) {
                    return Err(UnpackError::ReservedXattr {
                        path: path.to_owned(),
                        name: String::from_utf8_lossy(name).into_owned(),
                    });
                }
                let name =
                    CString::new(name).map_err(|_| UnpackError::corrupt(path, "NUL byte in xattr name".into()))?;
                meta.xattrs.push((name, value.to_vec()));
            }
        }
        Ok(meta)
    }

    pub(super) fn mtime(&self) -> TimeSpec {
        self.mtime
    }

    /// For a regular file or directory, open as `fd`. Times are left to the caller: a
    /// directory's wait until everything inside it is written.
    pub(super) fn apply(&self, fd: BorrowedFd<'_>, path: &str) -> Result<(), UnpackError> {
        let io = |errno| UnpackError::io(path, errno);
        fs::set_owner_mode(fd, self.uid, self.gid, self.mode).map_err(io)?;
        // After the chown, which drops security.capability.
        for (name, value) in &self.xattrs {
            fs::set_xattr(fd, name, value).map_err(io)?;
        }
        Ok(())
    }

    /// For a symlink, device or fifo `name` in `parent`, which are never opened: a device could
    /// act on an open, a fifo would block it.
    pub(super) fn apply_at(
        &self,
        parent: BorrowedFd<'_>,
        name: &CStr,
        is_symlink: bool,
        path: &str,
    ) -> Result<(), UnpackError> {
        let io = |errno| UnpackError::io(path, errno);
        fs::set_owner_at(parent, name, self.uid, self.gid).map_err(io)?;
        if !is_symlink {
            fs::set_mode_at(parent, name, self.mode).map_err(io)?;
        }
        for (key, value) in &self.xattrs {
            fs::set_xattr_at(parent, name, key, value).map_err(io)?;
        }
        fs::set_times_at(parent, name, &self.mtime).map_err(io)
    }
}

/// A PAX time: decimal seconds since the epoch, possibly negative, with an optional fraction.
fn pax_time(value: &[u8]) -> Option<TimeSpec> {
    let (negative, value) = match value.strip_prefix(b"-") {
        Some(rest) => (true, rest),
        None => (false, value),
    };
    let (secs, fraction) = match value.iter().position(|&b| b == b'.') {
        Some(dot) => (&value[..dot], &value[dot + 1..]),
        None => (value, &b""[..]),
    };
    if secs.is_empty() || !secs.iter().chain(fraction).all(u8::is_ascii_digit) {
        return None;
    }
    let secs: i64 = std::str::from_utf8(secs).ok()?.parse().ok()?;
    let nanos = fraction.iter().chain(std::iter::repeat(&b'0')).take(9).fold(0i64, |n, d| n * 10 + i64::from(d - b'0'));
    Some(match (negative, nanos) {
        (false, _) => TimeSpec::new(secs, nanos),
        (true, 0) => TimeSpec::new(-secs, 0),
        (true, _) => TimeSpec::new(-secs - 1, 1_000_000_000 - nanos),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pax_times() {
        let parse = |s: &str| pax_time(s.as_bytes()).map(|t| (t.tv_sec(), t.tv_nsec()));
        assert_eq!(parse("1700000000"), Some((1_700_000_000, 0)));
        assert_eq!(parse("1700000000.5"), Some((1_700_000_000, 500_000_000)));
        assert_eq!(parse("1700000000.123456789123"), Some((1_700_000_000, 123_456_789)));
        assert_eq!(parse("1."), Some((1, 0)));
        assert_eq!(parse("-1.25"), Some((-2, 750_000_000)));
        assert_eq!(parse("-3"), Some((-3, 0)));
        for bad in ["", ".5", "1.2.3", "+1", "1e9", "- 1", "99999999999999999999"] {
            assert_eq!(parse(bad), None, "{bad:?}");
        }
    }
}
