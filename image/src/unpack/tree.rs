//! The destination tree, and what each kind of tar entry does to it.

use std::collections::BTreeMap;
use std::ffi::{CStr, CString};
use std::io::{self, Read, Write};
use std::os::fd::AsFd;
use std::path::Path;

use nix::sys::stat::{SFlag, makedev};
use nix::sys::time::TimeSpec;
use tar::EntryType;

use super::Unpacked;
use super::error::{LimitExceeded, UnpackError};
use super::fs::{self, Blocked, Dirs, WalkError};
use super::meta::Meta;
use super::meter::Meter;
use super::path;
use super::whiteout::{self, OPAQUE_VALUE, OPAQUE_XATTR, Whiteout};
use crate::digest::Digest;

/// Large enough that copying a file costs few syscalls, small enough to stay in cache.
const COPY_BUFFER: usize = 256 * 1024;

pub(super) struct Tree {
    dirs: Dirs,
    /// Directories' modification times, set last since creating anything inside a directory
    /// changes its time. Keyed by normalised path, so a removed directory's subtree is a range.
    dir_times: BTreeMap<Vec<u8>, TimeSpec>,
    buffer: Vec<u8>,
    /// Also caps the file content written, which only sparse entries can make exceed the stream.
    max_bytes: u64,
    bytes: u64,
    inodes: u64,
}

impl Tree {
    pub(super) fn open(dest: &Path, max_bytes: u64) -> Result<Tree, UnpackError> {
        let dirs = Dirs::open_root(dest)
            .map_err(|errno| UnpackError::Destination { path: dest.to_owned(), source: errno.into() })?;
        Ok(Tree { dirs, dir_times: BTreeMap::new(), buffer: vec![0; COPY_BUFFER], max_bytes, bytes: 0, inodes: 0 })
    }

    /// Applies `entry`, whose path reads `path`, leaving any data it doesn't use unread.
    pub(super) fn add<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
        path: &str,
        meter: &Meter,
    ) -> Result<(), UnpackError> {
        let kind = entry.header().entry_type();
        if kind.is_pax_global_extensions() {
            // Defaults for the fields of later entries; image builders don't write them, and the
            // fields they could set don't bear on safety.
            return Ok(());
        }
        let (components, is_dir) = {
            let raw_path = entry.path_bytes();
            // Old tar wrote a directory as a regular entry whose name ends in a slash.
            (path::entry(&raw_path)?, kind.is_dir() || (kind.as_byte() == 0 && raw_path.ends_with(b"/")))
        };
        let Some((name, parents)) = components.split_last() else {
            return self.set_root(entry, is_dir, path);
        };
        if parents.iter().any(|parent| whiteout::is_reserved(parent)) {
            let reason = "a whiteout name cannot be a directory";
            return Err(UnpackError::Whiteout { path: path.to_owned(), reason });
        }
        let whiteout =
            whiteout::classify(name).map_err(|reason| UnpackError::Whiteout { path: path.to_owned(), reason })?;
        match whiteout {
            Some(Whiteout::Opaque) => return self.make_opaque(parents, path),
            Some(Whiteout::Hide(hidden)) => return self.hide(parents, &hidden, path),
            None => {}
        }
        if is_dir {
            return self.add_dir(entry, parents, name, path);
        }
        match kind {
            EntryType::Regular | EntryType::Continuous | EntryType::GNUSparse => {
                self.add_file(entry, parents, name, path, meter)
            }
            EntryType::Symlink => self.add_symlink(entry, parents, name, path),
            EntryType::Link => self.add_hard_link(entry, parents, name, path),
            EntryType::Char | EntryType::Block | EntryType::Fifo => self.add_node(entry, kind, parents, name, path),
            other => Err(UnpackError::UnsupportedType { path: path.to_owned(), kind: char::from(other.as_byte()) }),
        }
    }

    /// The directories created because entries needed them but the layer left them out.
    pub(super) fn implied_dirs(&self) -> u64 {
        self.dirs.created()
    }

    /// Sets the directories' times, now that nothing more will be created in them.
    pub(super) fn finish(mut self, diff_id: Digest) -> Result<Unpacked, UnpackError> {
        for (key, mtime) in std::mem::take(&mut self.dir_times) {
            let display = path::lossy(&key);
            let io = |errno| UnpackError::io(&display, errno);
            let components = path::entry(&key)?;
            match components.split_last() {
                None => fs::set_times(self.dirs.root(), &mtime).map_err(io)?,
                Some((name, parents)) => {
                    let parent = self.dirs.open(parents).map_err(|e| walk_error(e, parents, &display))?;
                    fs::set_times_at(parent, name, &mtime).map_err(io)?;
                }
            }
        }
        Ok(Unpacked { bytes: self.bytes, inodes: self.inodes + self.dirs.created(), diff_id })
    }

    fn set_root<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
        is_dir: bool,
        path: &str,
    ) -> Result<(), UnpackError> {
        if !is_dir {
            return Err(UnpackError::RootNotDirectory { path: path.to_owned() });
        }
        let meta = Meta::read(entry, path)?;
        meta.apply(self.dirs.root(), path)?;
        self.dir_times.insert(Vec::new(), meta.mtime());
        Ok(())
    }

    fn add_dir<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
        parents: &[CString],
        name: &CString,
        path: &str,
    ) -> Result<(), UnpackError> {
        let meta = Meta::read(entry, path)?;
        let io = |errno| UnpackError::io(path, errno);
        let parent = self.dirs.open(parents).map_err(|e| walk_error(e, parents, path))?;
        let made = fs::make_dir(parent, name).map_err(io)?;
        let dir = fs::open_dir(parent, name).map_err(io)?;
        meta.apply(dir.as_fd(), path)?;
        if made.replaced_whiteout {
            fs::set_xattr(dir.as_fd(), OPAQUE_XATTR, OPAQUE_VALUE).map_err(io)?;
        }
        self.dirs.enter(name.clone(), dir);
        self.inodes += u64::from(made.created);
        self.dir_times.insert(key(parents, name), meta.mtime());
        Ok(())
    }

    fn add_file<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
        parents: &[CString],
        name: &CStr,
        path: &str,
        meter: &Meter,
    ) -> Result<(), UnpackError> {
        let meta = Meta::read(entry, path)?;
        // A sparse entry's size counts only the data stored; reading fills in the holes.
        let size = (entry.header().entry_type() != EntryType::GNUSparse).then(|| entry.size());
        self.forget_dir_times(parents, name);
        let io = |errno| UnpackError::io(path, errno);
        let parent = self.dirs.open(parents).map_err(|e| walk_error(e, parents, path))?;
        let mut file = fs::create_file(parent, name).map_err(io)?;
        let mut written = 0u64;
        loop {
            let n = match entry.read(&mut self.buffer) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(meter.read_error(path, e)),
            };
            if self.bytes + written + n as u64 > self.max_bytes {
                let limit = LimitExceeded::Bytes(self.max_bytes);
                return Err(UnpackError::Limit { path: path.to_owned(), limit });
            }
            file.write_all(&self.buffer[..n]).map_err(|source| UnpackError::Io { path: path.to_owned(), source })?;
            written += n as u64;
        }
        if size.is_some_and(|size| size != written) {
            return Err(UnpackError::corrupt(path, format!("file data ends after {written} bytes")));
        }
        meta.apply(file.as_fd(), path)?;
        fs::set_times(file.as_fd(), &meta.mtime()).map_err(io)?;
        self.bytes += written;
        self.inodes += 1;
        Ok(())
    }

    fn add_symlink<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
        parents: &[CString],
        name: &CStr,
        path: &str,
    ) -> Result<(), UnpackError> {
        let meta = Meta::read(entry, path)?;
        let target = link_name(entry, path)?;
        // The target is only ever stored, never followed, so it may point anywhere.
        let target =
            CString::new(target).map_err(|_| UnpackError::corrupt(path, "NUL byte in symlink target".into()))?;
        self.forget_dir_times(parents, name);
        let parent = self.dirs.open(parents).map_err(|e| walk_error(e, parents, path))?;
        fs::symlink(parent, name, &target).map_err(|errno| UnpackError::io(path, errno))?;
        meta.apply_at(parent, name, true, path)?;
        self.inodes += 1;
        Ok(())
    }

    /// The link shares its inode, and so its metadata, with the target: applying the link
    /// entry's metadata as well would change the target, whatever it is.
    fn add_hard_link<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
        parents: &[CString],
        name: &CStr,
        path: &str,
    ) -> Result<(), UnpackError> {
        let target = path::link_target(&link_name(entry, path)?, path)?;
        if target.iter().any(|component| whiteout::is_reserved(component)) {
            return Err(UnpackError::Whiteout { path: path.to_owned(), reason: "hard link to a whiteout name" });
        }
        let Some((target_name, target_parents)) = target.split_last() else {
            return Err(UnpackError::InvalidPath { path: path.to_owned(), reason: "hard link to the layer root" });
        };
        self.forget_dir_times(parents, name);
        let io = |errno| UnpackError::io(path, errno);
        let target_parent = self.dirs.open(target_parents).map_err(|e| walk_error(e, target_parents, path))?;
        let target_parent =
            target_parent.try_clone_to_owned().map_err(|source| UnpackError::Io { path: path.to_owned(), source })?;
        let parent = self.dirs.open(parents).map_err(|e| walk_error(e, parents, path))?;
        fs::hard_link(target_parent.as_fd(), target_name, parent, name).map_err(io)
    }

    fn add_node<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
        kind: EntryType,
        parents: &[CString],
        name: &CStr,
        path: &str,
    ) -> Result<(), UnpackError> {
        let meta = Meta::read(entry, path)?;
        let (node, device) = match kind {
            EntryType::Fifo => (SFlag::S_IFIFO, 0),
            _ => {
                let header = entry.header();
                let number = |value: io::Result<Option<u32>>| match value {
                    Ok(Some(number)) => Ok(u64::from(number)),
                    Ok(None) => Err(UnpackError::corrupt(path, "device entry without device numbers".into())),
                    Err(source) => Err(UnpackError::Corrupt { path: path.to_owned(), source }),
                };
                let device = makedev(number(header.device_major())?, number(header.device_minor())?);
                (if kind == EntryType::Char { SFlag::S_IFCHR } else { SFlag::S_IFBLK }, device)
            }
        };
        self.forget_dir_times(parents, name);
        let parent = self.dirs.open(parents).map_err(|e| walk_error(e, parents, path))?;
        fs::node(parent, name, node, device).map_err(|errno| UnpackError::io(path, errno))?;
        meta.apply_at(parent, name, false, path)?;
        self.inodes += 1;
        Ok(())
    }

    fn hide(&mut self, parents: &[CString], hidden: &CStr, path: &str) -> Result<(), UnpackError> {
        self.forget_dir_times(parents, hidden);
        let parent = self.dirs.open(parents).map_err(|e| walk_error(e, parents, path))?;
        fs::whiteout(parent, hidden).map_err(|errno| UnpackError::io(path, errno))?;
        self.inodes += 1;
        Ok(())
    }

    fn make_opaque(&mut self, dir: &[CString], path: &str) -> Result<(), UnpackError> {
        let dir = self.dirs.open(dir).map_err(|e| walk_error(e, dir, path))?;
        fs::set_xattr(dir, OPAQUE_XATTR, OPAQUE_VALUE).map_err(|errno| UnpackError::io(path, errno))
    }

    /// `name` is about to stop being a directory, if it was one.
    fn forget_dir_times(&mut self, parents: &[CString], name: &CStr) {
        let key = key(parents, name);
        self.dir_times.remove(&key);
        let (mut first, mut past) = (key.clone(), key);
        first.push(b'/');
        past.push(b'/' + 1);
        let inside: Vec<Vec<u8>> = self.dir_times.range(first..past).map(|(key, _)| key.clone()).collect();
        for key in inside {
            self.dir_times.remove(&key);
        }
    }
}

fn key(parents: &[CString], name: &CStr) -> Vec<u8> {
    let mut key = path::join(parents);
    if !key.is_empty() {
        key.push(b'/');
    }
    key.extend_from_slice(name.to_bytes());
    key
}

fn link_name<R: Read>(entry: &tar::Entry<'_, R>, path: &str) -> Result<Vec<u8>, UnpackError> {
    match entry.link_name_bytes() {
        Some(target) if !target.is_empty() => Ok(target.into_owned()),
        _ => Err(UnpackError::corrupt(path, "link without a target".into())),
    }
}

/// `components` are those walked, the entry's own parents or its hard link target's.
fn walk_error(error: WalkError, components: &[CString], path: &str) -> UnpackError {
    let component = path::lossy(&path::join(&components[..=error.depth]));
    let path = path.to_owned();
    match error.blocked {
        Blocked::Symlink => UnpackError::ThroughSymlink { path, component },
        Blocked::NotADirectory => UnpackError::NotADirectory { path, component },
        Blocked::Io(errno) => UnpackError::Io { path, source: io::Error::from(errno) },
    }
}
