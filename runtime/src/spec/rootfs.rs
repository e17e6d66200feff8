//! Looking at files inside a container's rootfs from the host without following the image's
//! symlinks out of it: every path is resolved by the kernel as if the rootfs were `/`
//! (`openat2` with `RESOLVE_IN_ROOT`), so `/etc/passwd -> /etc/shadow` or `../../..` stay in.

use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Component, Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{OFlag, OpenHow, ResolveFlag, openat2};
use nix::sys::stat::{Mode, SFlag, fstat};

/// Files read from an image (passwd, group) are at most this big: they are parsed in memory.
pub const MAX_FILE_BYTES: u64 = 1 << 20;

#[derive(Debug, thiserror::Error)]
pub enum RootfsError {
    #[error("opening {path} in the rootfs: {source}")]
    Open { path: PathBuf, source: io::Error },
    #[error("{path} in the rootfs is not a regular file")]
    NotRegular { path: PathBuf },
    #[error("{path} in the rootfs is larger than {MAX_FILE_BYTES} bytes")]
    TooLarge { path: PathBuf },
}

/// A container's root directory, opened once.
pub struct Rootfs {
    dir: OwnedFd,
    path: PathBuf,
}

/// What a path inside the rootfs is, after resolving it there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    Missing,
    Directory,
    Other,
}

impl Rootfs {
    pub fn open(path: &Path) -> Result<Rootfs, RootfsError> {
        let flags = OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC;
        let dir = nix::fcntl::open(path, flags, Mode::empty())
            .map_err(|e| RootfsError::Open { path: path.to_owned(), source: e.into() })?;
        Ok(Rootfs { dir, path: path.to_owned() })
    }

    fn open_in(&self, path: &Path, flags: OFlag) -> nix::Result<OwnedFd> {
        let relative = path.strip_prefix("/").unwrap_or(path);
        let relative = if relative.as_os_str().is_empty() { Path::new(".") } else { relative };
        // openat2 refuses flags O_PATH ignores, such as O_NOCTTY.
        let extra = if flags.contains(OFlag::O_PATH) { OFlag::O_CLOEXEC } else { OFlag::O_CLOEXEC | OFlag::O_NOCTTY };
        let how = OpenHow::new()
            .flags(flags | extra)
            .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS);
        // EAGAIN: the kernel asks to retry a lookup raced by a rename somewhere in the tree.
        loop {
            match openat2(self.dir.as_fd(), relative, how) {
                Err(Errno::EAGAIN) => continue,
                other => return other,
            }
        }
    }

    /// The contents of a regular file, `None` if it does not exist. Non-blocking open: a FIFO
    /// planted at that path is refused instead of hanging the daemon.
    pub fn read(&self, path: &Path) -> Result<Option<Vec<u8>>, RootfsError> {
        let open_error = |e: Errno| RootfsError::Open { path: path.to_owned(), source: e.into() };
        let fd = match self.open_in(path, OFlag::O_RDONLY | OFlag::O_NONBLOCK) {
            Ok(fd) => fd,
            Err(Errno::ENOENT | Errno::ENOTDIR) => return Ok(None),
            Err(e) => return Err(open_error(e)),
        };
        let stat = fstat(&fd).map_err(open_error)?;
        if SFlag::from_bits_truncate(stat.st_mode) & SFlag::S_IFMT != SFlag::S_IFREG {
            return Err(RootfsError::NotRegular { path: path.to_owned() });
        }
        let mut contents = Vec::new();
        File::from(fd)
            .take(MAX_FILE_BYTES + 1)
            .read_to_end(&mut contents)
            .map_err(|e| RootfsError::Open { path: path.to_owned(), source: e })?;
        if contents.len() as u64 > MAX_FILE_BYTES {
            return Err(RootfsError::TooLarge { path: path.to_owned() });
        }
        Ok(Some(contents))
    }

    /// What `path` names inside the rootfs.
    pub fn entry(&self, path: &Path) -> Result<Entry, RootfsError> {
        match self.open_in(path, OFlag::O_PATH) {
            Ok(fd) => {
                let stat = fstat(&fd).map_err(|e| RootfsError::Open { path: path.to_owned(), source: e.into() })?;
                let dir = SFlag::from_bits_truncate(stat.st_mode) & SFlag::S_IFMT == SFlag::S_IFDIR;
                Ok(if dir { Entry::Directory } else { Entry::Other })
            }
            Err(Errno::ENOENT | Errno::ENOTDIR) => Ok(Entry::Missing),
            Err(e) => Err(RootfsError::Open { path: path.to_owned(), source: e.into() }),
        }
    }

    /// `path` with the symlinks the rootfs holds resolved inside it, as a path in the
    /// container; the longest existing prefix is resolved and the rest appended as given.
    pub fn resolve(&self, path: &Path) -> Result<PathBuf, RootfsError> {
        let clean = clean(path);
        let mut existing = clean.clone();
        let mut rest = Vec::new();
        let fd = loop {
            match self.open_in(&existing, OFlag::O_PATH) {
                Ok(fd) => break fd,
                Err(Errno::ENOENT | Errno::ENOTDIR) => {
                    let name = existing.file_name().map(ToOwned::to_owned);
                    match name {
                        Some(name) => {
                            rest.push(name);
                            existing.pop();
                        }
                        None => break self.open_in(Path::new("/"), OFlag::O_PATH).map_err(|e| self.error(path, e))?,
                    }
                }
                Err(e) => return Err(self.error(path, e)),
            }
        };
        let real = std::fs::read_link(format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&fd)))
            .map_err(|e| RootfsError::Open { path: path.to_owned(), source: e })?;
        let root = std::fs::read_link(format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&self.dir)))
            .map_err(|e| RootfsError::Open { path: self.path.clone(), source: e })?;
        let inside = real.strip_prefix(&root).map_err(|_| RootfsError::Open {
            path: path.to_owned(),
            source: io::Error::other("resolved outside the rootfs"),
        })?;
        let mut resolved = Path::new("/").join(inside);
        resolved.extend(rest.iter().rev());
        Ok(resolved)
    }

    fn error(&self, path: &Path, e: Errno) -> RootfsError {
        RootfsError::Open { path: path.to_owned(), source: e.into() }
    }
}

/// `path` made absolute and lexically clean: `.` dropped, `..` applied, never above `/`.
pub fn clean(path: &Path) -> PathBuf {
    let mut out = PathBuf::from("/");
    for component in path.components() {
        match component {
            Component::Normal(name) => out.push(name),
            Component::ParentDir => {
                out.pop();
            }
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::symlink;

    fn rootfs() -> (tempfile::TempDir, Rootfs) {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir_all(dir.path().join("root/etc")).unwrap();
        let rootfs = Rootfs::open(&dir.path().join("root")).unwrap();
        (dir, rootfs)
    }

    #[test]
    fn symlinks_out_of_the_rootfs_stay_in_it() {
        let (dir, rootfs) = rootfs();
        fs::write(dir.path().join("secret"), "root:x:0:0::/root:/bin/sh\n").unwrap();
        let root = dir.path().join("root");
        // Absolute, relative and through-a-directory escapes all land inside the rootfs.
        symlink(dir.path().join("secret"), root.join("etc/passwd")).unwrap();
        symlink("../../../../../../secret", root.join("etc/group")).unwrap();
        fs::create_dir(root.join("up")).unwrap();
        symlink("/../..", root.join("up/link")).unwrap();
        assert_eq!(rootfs.read(Path::new("/etc/passwd")).unwrap(), None);
        assert_eq!(rootfs.read(Path::new("/etc/group")).unwrap(), None);
        assert_eq!(rootfs.read(Path::new("/up/link/secret")).unwrap(), None);
        // The same names inside the rootfs are what is read.
        fs::write(root.join("secret"), "inside").unwrap();
        assert_eq!(rootfs.read(Path::new("/etc/group")).unwrap().unwrap(), b"inside");
        assert_eq!(rootfs.read(Path::new("/up/link/secret")).unwrap().unwrap(), b"inside");
    }

    #[test]
    fn only_small_regular_files_are_read() {
        let (dir, rootfs) = rootfs();
        let root = dir.path().join("root");
        nix::unistd::mkfifo(&root.join("etc/passwd"), Mode::from_bits_truncate(0o600)).unwrap();
        assert!(matches!(rootfs.read(Path::new("etc/passwd")), Err(RootfsError::NotRegular { .. })));
        assert!(matches!(rootfs.read(Path::new("etc")), Err(RootfsError::NotRegular { .. })));
        fs::write(root.join("etc/group"), vec![b'a'; MAX_FILE_BYTES as usize + 1]).unwrap();
        assert!(matches!(rootfs.read(Path::new("etc/group")), Err(RootfsError::TooLarge { .. })));
        fs::write(root.join("etc/group"), vec![b'a'; MAX_FILE_BYTES as usize]).unwrap();
        assert_eq!(rootfs.read(Path::new("etc/group")).unwrap().unwrap().len(), MAX_FILE_BYTES as usize);
    }

    #[test]
    fn entries_and_resolution_stay_inside() {
        let (dir, rootfs) = rootfs();
        let root = dir.path().join("root");
        fs::create_dir_all(root.join("var/lib/data")).unwrap();
        symlink("/var/lib", root.join("lib")).unwrap();
        symlink("/", root.join("escape")).unwrap();
        fs::write(root.join("file"), "").unwrap();
        assert_eq!(rootfs.entry(Path::new("/lib/data")).unwrap(), Entry::Directory);
        assert_eq!(rootfs.entry(Path::new("/file")).unwrap(), Entry::Other);
        assert_eq!(rootfs.entry(Path::new("/nope/x")).unwrap(), Entry::Missing);
        assert_eq!(rootfs.resolve(Path::new("/lib/data")).unwrap(), Path::new("/var/lib/data"));
        assert_eq!(rootfs.resolve(Path::new("/lib/new/dir")).unwrap(), Path::new("/var/lib/new/dir"));
        assert_eq!(rootfs.resolve(Path::new("/escape/../../etc")).unwrap(), Path::new("/etc"));
        assert_eq!(rootfs.resolve(Path::new("/escape/tmp")).unwrap(), Path::new("/tmp"));
    }

    #[test]
    fn clean_never_climbs_above_root() {
        assert_eq!(clean(Path::new("a/./b/../c")), Path::new("/a/c"));
        assert_eq!(clean(Path::new("/../../x")), Path::new("/x"));
        assert_eq!(clean(Path::new("/")), Path::new("/"));
    }
}
