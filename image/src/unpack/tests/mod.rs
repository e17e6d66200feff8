//! Unpacking real layers built in memory into temporary directories, as root.

mod entries;
mod hostile;
mod overlay;

use std::collections::BTreeMap;
use std::ffi::CString;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use tar::{EntryType, Header};

use super::{Compression, Limits, UnpackError, Unpacked, unpack};

pub(super) const MTIME: u64 = 1_600_000_000;

/// Header fields of a test entry.
#[derive(Clone, Copy)]
pub(super) struct Attrs {
    pub(super) mode: u32,
    pub(super) uid: u64,
    pub(super) gid: u64,
    pub(super) mtime: u64,
}

pub(super) const FILE: Attrs = Attrs { mode: 0o644, uid: 0, gid: 0, mtime: MTIME };
pub(super) const DIR: Attrs = Attrs { mode: 0o755, uid: 0, gid: 0, mtime: MTIME };

pub(super) fn attrs(mode: u32, uid: u64, gid: u64, mtime: u64) -> Attrs {
    Attrs { mode, uid, gid, mtime }
}

/// A tar layer under construction.
pub(super) struct Layer(tar::Builder<Vec<u8>>);

impl Layer {
    pub(super) fn new() -> Layer {
        Layer(tar::Builder::new(Vec::new()))
    }

    fn header(kind: EntryType, attrs: Attrs) -> Header {
        let mut header = Header::new_gnu();
        header.set_entry_type(kind);
        header.set_mode(attrs.mode);
        header.set_uid(attrs.uid);
        header.set_gid(attrs.gid);
        header.set_mtime(attrs.mtime);
        header.set_size(0);
        header
    }

    pub(super) fn file(mut self, path: &str, data: &[u8], attrs: Attrs) -> Layer {
        let mut header = Self::header(EntryType::Regular, attrs);
        header.set_size(data.len() as u64);
        self.0.append_data(&mut header, path, data).unwrap();
        self
    }

    pub(super) fn dir(mut self, path: &str, attrs: Attrs) -> Layer {
        let mut header = Self::header(EntryType::Directory, attrs);
        self.0.append_data(&mut header, path, &[][..]).unwrap();
        self
    }

    pub(super) fn symlink(mut self, path: &str, target: &str, attrs: Attrs) -> Layer {
        let mut header = Self::header(EntryType::Symlink, attrs);
        self.0.append_link(&mut header, path, target).unwrap();
        self
    }

    pub(super) fn hard_link(mut self, path: &str, target: &str) -> Layer {
        let mut header = Self::header(EntryType::Link, FILE);
        self.0.append_link(&mut header, path, target).unwrap();
        self
    }

    pub(super) fn node(mut self, path: &str, kind: EntryType, major: u32, minor: u32, attrs: Attrs) -> Layer {
        let mut header = Self::header(kind, attrs);
        header.set_device_major(major).unwrap();
        header.set_device_minor(minor).unwrap();
        self.0.append_data(&mut header, path, &[][..]).unwrap();
        self
    }

    /// A GNU sparse entry of `len` bytes, all hole but `data` at `offset`.
    pub(super) fn sparse(mut self, path: &str, len: u64, offset: u64, data: &[u8]) -> Layer {
        let dir = tempfile::tempdir().unwrap();
        let file = fs::File::create(dir.path().join("sparse")).unwrap();
        file.set_len(len).unwrap();
        file.write_all_at(data, offset).unwrap();
        self.0.sparse(true);
        self.0.append_path_with_name(dir.path().join("sparse"), path).unwrap();
        self
    }

    /// PAX records for the next entry.
    pub(super) fn pax(mut self, records: &[(&str, &[u8])]) -> Layer {
        self.0.append_pax_extensions(records.iter().copied()).unwrap();
        self
    }

    /// An entry whose name and link name go into the header byte for byte, past the checks
    /// `tar::Builder` makes.
    pub(super) fn raw(mut self, kind: EntryType, name: &[u8], link: &[u8], data: &[u8]) -> Layer {
        let mut header = Self::header(kind, FILE);
        header.as_old_mut().name[..name.len()].copy_from_slice(name);
        header.as_old_mut().linkname[..link.len()].copy_from_slice(link);
        header.set_size(data.len() as u64);
        header.set_cksum();
        self.0.append(&header, data).unwrap();
        self
    }

    pub(super) fn tar(self) -> Vec<u8> {
        self.0.into_inner().unwrap()
    }
}

/// A temporary directory holding the destination and, beside it, a sentinel directory that
/// hostile layers aim at: `check_outside` fails if anything outside the destination changed.
pub(super) struct Sandbox {
    tmp: tempfile::TempDir,
    pub(super) dest: PathBuf,
    pub(super) sentinel: PathBuf,
    before: BTreeMap<PathBuf, Node>,
}

impl Sandbox {
    pub(super) fn new() -> Sandbox {
        let tmp = tempfile::tempdir().unwrap();
        let dest = tmp.path().join("dest");
        let sentinel = tmp.path().join("sentinel");
        fs::create_dir(&dest).unwrap();
        fs::create_dir_all(sentinel.join("sub")).unwrap();
        fs::write(sentinel.join("secret"), "secret").unwrap();
        fs::write(sentinel.join("sub/inner"), "inner").unwrap();
        fs::set_permissions(sentinel.join("secret"), fs::Permissions::from_mode(0o640)).unwrap();
        std::os::unix::fs::chown(sentinel.join("secret"), Some(1234), Some(5678)).unwrap();
        let before = snapshot(tmp.path(), &dest);
        Sandbox { tmp, dest, sentinel, before }
    }

    pub(super) fn unpack(&self, tar: &[u8]) -> Result<Unpacked, UnpackError> {
        unpack(tar, Compression::None, &self.dest, &Limits::default())
    }

    pub(super) fn path(&self, relative: &str) -> PathBuf {
        self.dest.join(relative)
    }

    /// The sentinel's absolute path, for symlinks that aim at it.
    pub(super) fn sentinel_str(&self) -> &str {
        self.sentinel.to_str().unwrap()
    }

    pub(super) fn check_outside(&self) {
        assert_eq!(snapshot(self.tmp.path(), &self.dest), self.before, "something outside the destination changed");
    }
}

/// Everything about a file that a layer could change.
#[derive(Debug, PartialEq, Eq)]
struct Node {
    mode: u32,
    uid: u32,
    gid: u32,
    mtime: (i64, i64),
    content: Vec<u8>,
    xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

fn snapshot(root: &Path, skip: &Path) -> BTreeMap<PathBuf, Node> {
    let mut nodes = BTreeMap::new();
    let mut pending = vec![root.to_owned()];
    while let Some(path) = pending.pop() {
        let meta = fs::symlink_metadata(&path).unwrap();
        let content = if meta.is_dir() {
            let mut names = Vec::new();
            for child in fs::read_dir(&path).unwrap() {
                let child = child.unwrap().path();
                names.extend_from_slice(child.file_name().unwrap().as_bytes());
                names.push(b'\n');
                if child != skip {
                    pending.push(child);
                }
            }
            names
        } else if meta.is_symlink() {
            fs::read_link(&path).unwrap().as_os_str().as_bytes().to_vec()
        } else {
            fs::read(&path).unwrap()
        };
        let node = Node {
            mode: meta.mode(),
            uid: meta.uid(),
            gid: meta.gid(),
            mtime: (meta.mtime(), meta.mtime_nsec()),
            content,
            xattrs: xattrs(&path),
        };
        nodes.insert(path, node);
    }
    nodes
}

/// A file's xattrs, without following a symlink.
pub(super) fn xattrs(path: &Path) -> Vec<(Vec<u8>, Vec<u8>)> {
    let cpath = CString::new(path.as_os_str().as_bytes()).unwrap();
    let mut names = vec![0u8; 64 * 1024];
    // SAFETY: the buffer is valid for its length.
    let len = unsafe { libc::llistxattr(cpath.as_ptr(), names.as_mut_ptr().cast(), names.len()) };
    assert!(len >= 0, "llistxattr {}: {}", path.display(), std::io::Error::last_os_error());
    names.truncate(len as usize);
    let mut xattrs = Vec::new();
    for name in names.split(|&b| b == 0).filter(|name| !name.is_empty()) {
        let value = xattr(path, std::str::from_utf8(name).unwrap()).unwrap();
        xattrs.push((name.to_vec(), value));
    }
    xattrs.sort();
    xattrs
}

/// One xattr of a file, without following a symlink.
pub(super) fn xattr(path: &Path, name: &str) -> Option<Vec<u8>> {
    let cpath = CString::new(path.as_os_str().as_bytes()).unwrap();
    let cname = CString::new(name).unwrap();
    let mut value = vec![0u8; 64 * 1024];
    // SAFETY: the buffer is valid for its length.
    let len = unsafe { libc::lgetxattr(cpath.as_ptr(), cname.as_ptr(), value.as_mut_ptr().cast(), value.len()) };
    if len < 0 {
        return None;
    }
    value.truncate(len as usize);
    Some(value)
}

pub(super) fn meta(path: &Path) -> fs::Metadata {
    fs::symlink_metadata(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Whether `path` is an overlayfs whiteout: a character device 0:0.
pub(super) fn is_whiteout(path: &Path) -> bool {
    use std::os::unix::fs::FileTypeExt;
    let meta = meta(path);
    meta.file_type().is_char_device() && meta.rdev() == 0
}
