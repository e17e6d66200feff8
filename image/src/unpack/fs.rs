//! The filesystem calls unpacking makes. Every one is relative to a descriptor of a directory
//! inside the destination and names a single entry of it, and none follows a symlink, so whatever
//! a layer holds, nothing outside the destination can be reached.

use std::ffi::{CStr, CString};
use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::Path;

use nix::dir::{Dir, Type};
use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag, open, openat};
use nix::sys::stat::{
    FchmodatFlags, FileStat, Mode, SFlag, UtimensatFlags, fchmod, fchmodat, fstatat, futimens, makedev, mkdirat,
    mknodat, utimensat,
};
use nix::sys::time::TimeSpec;
use nix::unistd::{Gid, Uid, UnlinkatFlags, fchown, fchownat, linkat, symlinkat, unlinkat};

const DIR_FLAGS: OFlag = OFlag::O_RDONLY.union(OFlag::O_DIRECTORY).union(OFlag::O_NOFOLLOW).union(OFlag::O_CLOEXEC);

/// Mode of the directories a layer leaves out but needs for its entries, as `tar` creates them.
const IMPLICIT_DIR_MODE: Mode = Mode::from_bits_truncate(0o755);

/// Why a directory on the way to an entry could not be entered.
pub(super) enum Blocked {
    Symlink,
    NotADirectory,
    Io(Errno),
}

/// `depth` indexes the component that blocked the walk.
pub(super) struct WalkError {
    pub(super) depth: usize,
    pub(super) blocked: Blocked,
}

/// Directory descriptors from the destination root down to the parent of the last entry.
/// Layers list a directory's entries together, so most entries reuse the parent the previous one
/// opened. Entries only ever change names below the deepest open directory, so every descriptor
/// kept still refers to the directory its path names.
pub(super) struct Dirs {
    root: OwnedFd,
    open: Vec<(CString, OwnedFd)>,
    created: u64,
}

impl Dirs {
    pub(super) fn open_root(dest: &Path) -> nix::Result<Dirs> {
        let root = open(dest, OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, Mode::empty())?;
        Ok(Dirs { root, open: Vec::new(), created: 0 })
    }

    pub(super) fn root(&self) -> BorrowedFd<'_> {
        self.root.as_fd()
    }

    /// The directories created because a layer left them out.
    pub(super) fn created(&self) -> u64 {
        self.created
    }

    /// The directory `components` names, creating missing ones as `mkdir -p` would, since layers
    /// may leave parent directories out.
    pub(super) fn open(&mut self, components: &[CString]) -> Result<BorrowedFd<'_>, WalkError> {
        let kept = self.open.iter().zip(components).take_while(|((open, _), wanted)| open == *wanted).count();
        self.open.truncate(kept);
        for (depth, name) in components.iter().enumerate().skip(kept) {
            let parent = self.open.last().map_or(self.root.as_fd(), |(_, fd)| fd.as_fd());
            let (fd, created) = descend(parent, name).map_err(|blocked| WalkError { depth, blocked })?;
            self.created += u64::from(created);
            self.open.push((name.clone(), fd));
        }
        Ok(self.open.last().map_or(self.root.as_fd(), |(_, fd)| fd.as_fd()))
    }

    /// Keeps `fd`, the directory `name` inside the one the last `open` returned, so that entries
    /// inside it need not open it again.
    pub(super) fn enter(&mut self, name: CString, fd: OwnedFd) {
        self.open.push((name, fd));
    }
}

fn descend(parent: BorrowedFd<'_>, name: &CStr) -> Result<(OwnedFd, bool), Blocked> {
    match open_dir(parent, name) {
        Ok(fd) => return Ok((fd, false)),
        Err(Errno::ENOENT) => {}
        Err(errno) => return Err(blocked(parent, name, errno)),
    }
    mkdirat(parent, name, IMPLICIT_DIR_MODE).map_err(Blocked::Io)?;
    let fd = open_dir(parent, name).map_err(|errno| blocked(parent, name, errno))?;
    // mkdirat applied the umask.
    fchmod(&fd, IMPLICIT_DIR_MODE).map_err(Blocked::Io)?;
    Ok((fd, true))
}

fn blocked(parent: BorrowedFd<'_>, name: &CStr, errno: Errno) -> Blocked {
    if errno != Errno::ELOOP && errno != Errno::ENOTDIR {
        return Blocked::Io(errno);
    }
    match fstatat(parent, name, AtFlags::AT_SYMLINK_NOFOLLOW) {
        Ok(stat) if kind(&stat) == SFlag::S_IFLNK => Blocked::Symlink,
        Ok(_) => Blocked::NotADirectory,
        Err(errno) => Blocked::Io(errno),
    }
}

pub(super) fn open_dir(parent: BorrowedFd<'_>, name: &CStr) -> nix::Result<OwnedFd> {
    openat(parent, name, DIR_FLAGS, Mode::empty())
}

fn kind(stat: &FileStat) -> SFlag {
    SFlag::from_bits_truncate(stat.st_mode & SFlag::S_IFMT.bits())
}

/// Runs `create`, and if `name` is taken, removes what holds it and runs `create` again: a later
/// entry for a path replaces an earlier one.
fn replacing<T>(parent: BorrowedFd<'_>, name: &CStr, create: impl Fn() -> nix::Result<T>) -> nix::Result<T> {
    match create() {
        Err(Errno::EEXIST) => {
            remove(parent, name)?;
            create()
        }
        result => result,
    }
}

fn remove(parent: BorrowedFd<'_>, name: &CStr) -> nix::Result<()> {
    if kind(&fstatat(parent, name, AtFlags::AT_SYMLINK_NOFOLLOW)?) == SFlag::S_IFDIR {
        remove_tree(parent, name)
    } else {
        unlinkat(parent, name, UnlinkatFlags::NoRemoveDir)
    }
}

/// Removes the directory `name` and everything in it. Iterative, so a deep tree cannot exhaust
/// the stack.
fn remove_tree(parent: BorrowedFd<'_>, name: &CStr) -> nix::Result<()> {
    struct Level {
        dir: Dir,
        name: CString,
        subdirs: Vec<CString>,
    }
    fn empty_all_but_subdirs(parent: BorrowedFd<'_>, name: &CStr) -> nix::Result<Level> {
        let mut dir = Dir::from_fd(open_dir(parent, name)?)?;
        let mut children = Vec::new();
        for entry in dir.iter() {
            let entry = entry?;
            let child = entry.file_name();
            if child != c"." && child != c".." {
                children.push((child.to_owned(), entry.file_type()));
            }
        }
        // Unlinked only after the listing, which unlinking during it might make skip names.
        let mut subdirs = Vec::new();
        for (child, file_type) in children {
            let is_dir = match file_type {
                Some(file_type) => file_type == Type::Directory,
                None => kind(&fstatat(&dir, child.as_c_str(), AtFlags::AT_SYMLINK_NOFOLLOW)?) == SFlag::S_IFDIR,
            };
            if is_dir {
                subdirs.push(child);
            } else {
                unlinkat(&dir, child.as_c_str(), UnlinkatFlags::NoRemoveDir)?;
            }
        }
        Ok(Level { dir, name: name.to_owned(), subdirs })
    }

    let mut levels = vec![empty_all_but_subdirs(parent, name)?];
    while let Some(level) = levels.last_mut() {
        if let Some(subdir) = level.subdirs.pop() {
            let next = empty_all_but_subdirs(level.dir.as_fd(), &subdir)?;
            levels.push(next);
            continue;
        }
        let Some(done) = levels.pop() else { break };
        let parent = levels.last().map_or(parent, |level| level.dir.as_fd());
        unlinkat(parent, done.name.as_c_str(), UnlinkatFlags::RemoveDir)?;
    }
    Ok(())
}

pub(super) fn create_file(parent: BorrowedFd<'_>, name: &CStr) -> nix::Result<File> {
    let flags = OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    let fd = replacing(parent, name, || openat(parent, name, flags, Mode::S_IRUSR | Mode::S_IWUSR))?;
    Ok(File::from(fd))
}

pub(super) struct MadeDir {
    pub(super) created: bool,
    /// It took the place of a whiteout: the layer deletes the directory below and makes a new
    /// one, which overlayfs must not merge with the old.
    pub(super) replaced_whiteout: bool,
}

/// Makes the directory `name`, or keeps the one already there.
pub(super) fn make_dir(parent: BorrowedFd<'_>, name: &CStr) -> nix::Result<MadeDir> {
    let mode = Mode::S_IRWXU;
    match mkdirat(parent, name, mode) {
        Ok(()) => return Ok(MadeDir { created: true, replaced_whiteout: false }),
        Err(Errno::EEXIST) => {}
        Err(errno) => return Err(errno),
    }
    let stat = fstatat(parent, name, AtFlags::AT_SYMLINK_NOFOLLOW)?;
    if kind(&stat) == SFlag::S_IFDIR {
        return Ok(MadeDir { created: false, replaced_whiteout: false });
    }
    unlinkat(parent, name, UnlinkatFlags::NoRemoveDir)?;
    mkdirat(parent, name, mode)?;
    Ok(MadeDir { created: true, replaced_whiteout: is_whiteout(&stat) })
}

fn is_whiteout(stat: &FileStat) -> bool {
    kind(stat) == SFlag::S_IFCHR && stat.st_rdev == makedev(0, 0)
}

pub(super) fn symlink(parent: BorrowedFd<'_>, name: &CStr, target: &CStr) -> nix::Result<()> {
    replacing(parent, name, || symlinkat(target, parent, name))
}

/// Links `name` to `target`, without following `target` if it is a symlink.
pub(super) fn hard_link(
    target_parent: BorrowedFd<'_>,
    target: &CStr,
    parent: BorrowedFd<'_>,
    name: &CStr,
) -> nix::Result<()> {
    replacing(parent, name, || linkat(target_parent, target, parent, name, AtFlags::empty()))
}

/// A device node or fifo, with no permissions until `set_mode_at` gives it its own.
pub(super) fn node(parent: BorrowedFd<'_>, name: &CStr, kind: SFlag, device: libc::dev_t) -> nix::Result<()> {
    replacing(parent, name, || mknodat(parent, name, kind, Mode::empty(), device))
}

/// The overlayfs whiteout hiding `name` of the layers below.
pub(super) fn whiteout(parent: BorrowedFd<'_>, name: &CStr) -> nix::Result<()> {
    node(parent, name, SFlag::S_IFCHR, makedev(0, 0))
}

/// Owner before mode: chown clears the setuid and setgid bits.
pub(super) fn set_owner_mode(fd: BorrowedFd<'_>, uid: Uid, gid: Gid, mode: Mode) -> nix::Result<()> {
    fchown(fd, Some(uid), Some(gid))?;
    fchmod(fd, mode)
}

pub(super) fn set_xattr(fd: BorrowedFd<'_>, name: &CStr, value: &[u8]) -> nix::Result<()> {
    // SAFETY: both pointers are valid for the lengths given for the duration of the call.
    let rc = unsafe { libc::fsetxattr(fd.as_raw_fd(), name.as_ptr(), value.as_ptr().cast(), value.len(), 0) };
    Errno::result(rc).map(drop)
}

pub(super) fn set_times(fd: BorrowedFd<'_>, mtime: &TimeSpec) -> nix::Result<()> {
    futimens(fd, mtime, mtime)
}

pub(super) fn set_owner_at(parent: BorrowedFd<'_>, name: &CStr, uid: Uid, gid: Gid) -> nix::Result<()> {
    fchownat(parent, name, Some(uid), Some(gid), AtFlags::AT_SYMLINK_NOFOLLOW)
}

/// Never for a symlink: Linux has no mode for them, and glibc refuses rather than follow one.
pub(super) fn set_mode_at(parent: BorrowedFd<'_>, name: &CStr, mode: Mode) -> nix::Result<()> {
    fchmodat(parent, name, mode, FchmodatFlags::NoFollowSymlink)
}

/// For nodes that must not be opened (symlinks, devices, fifos). There is no `fsetxattrat` before
/// Linux 6.13, so the parent is named through its descriptor's /proc link, which resolves to that
/// very directory, and `lsetxattr` does not follow `name`.
pub(super) fn set_xattr_at(parent: BorrowedFd<'_>, name: &CStr, key: &CStr, value: &[u8]) -> nix::Result<()> {
    let mut path = format!("/proc/self/fd/{}/", parent.as_raw_fd()).into_bytes();
    path.extend_from_slice(name.to_bytes());
    let path = CString::new(path).map_err(|_| Errno::EINVAL)?;
    // SAFETY: all pointers are valid for the lengths given for the duration of the call.
    let rc = unsafe { libc::lsetxattr(path.as_ptr(), key.as_ptr(), value.as_ptr().cast(), value.len(), 0) };
    Errno::result(rc).map(drop)
}

pub(super) fn set_times_at(parent: BorrowedFd<'_>, name: &CStr, mtime: &TimeSpec) -> nix::Result<()> {
    utimensat(parent, name, mtime, mtime, UtimensatFlags::NoFollowSymlink)
}
