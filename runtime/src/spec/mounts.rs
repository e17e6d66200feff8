//! A container's mounts (the CRI's binds, the pod's files, image volumes) and devices.

use std::fs;
use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use oci_spec::runtime::{LinuxDevice, LinuxDeviceCgroup, LinuxDeviceType, Mount};

use super::rootfs::{Rootfs, RootfsError, clean};

/// A host path bound into the container (a CRI `Mount`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BindMount {
    /// Absolute path in the container.
    pub container_path: PathBuf,
    /// Existing path on the host; symlinks in it are resolved on the host.
    pub host_path: PathBuf,
    pub readonly: bool,
    /// Read-only all the way down (submounts too): needs `readonly`, private propagation
    /// and a runtime that supports `rro`.
    pub recursive_readonly: bool,
    pub propagation: Propagation,
}

/// Mount propagation between the host and the container for a bind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Propagation {
    /// Nothing propagates (`rprivate`).
    #[default]
    Private,
    /// Host mounts appear in the container (`rslave`): the host path must be on a shared or
    /// slave mount.
    HostToContainer,
    /// Both ways (`rshared`): the host path must be on a shared mount.
    Bidirectional,
}

/// The pod's files every container of it sees, unless its own mounts cover those paths.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PodFiles {
    /// Bound at `/etc/hostname`.
    pub hostname: Option<PathBuf>,
    /// Bound at `/etc/hosts`.
    pub hosts: Option<PathBuf>,
    /// Bound at `/etc/resolv.conf`.
    pub resolv_conf: Option<PathBuf>,
    /// The pod's `/dev/shm` tmpfs; a container in the host's IPC namespace gets the host's
    /// `/dev/shm` instead.
    pub shm: Option<PathBuf>,
}

/// A host device made available in the container (a CRI `Device`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Device {
    /// A device node, or a directory of them (taken recursively).
    pub host_path: PathBuf,
    pub container_path: PathBuf,
    /// Device cgroup access: a non-empty subset of `rwm`.
    pub permissions: String,
}

/// An image `VOLUME` the caller backs with an empty directory before the container is
/// created: `host_path` (under the input's `volumes_dir`) is bound at `container_path`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageVolume {
    /// The volume's path in the container, with the rootfs's symlinks resolved inside it.
    pub container_path: PathBuf,
    pub host_path: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum MountError {
    #[error("mount destination {0:?} is not an absolute path")]
    RelativeDestination(PathBuf),
    #[error("mount source {path}: {source}")]
    Source { path: PathBuf, source: io::Error },
    #[error("mount source {path} is on {mountpoint}, which is not a shared mount (bidirectional propagation)")]
    NotShared { path: PathBuf, mountpoint: PathBuf },
    #[error(
        "mount source {path} is on {mountpoint}, which is neither a shared nor a slave mount (host-to-container propagation)"
    )]
    NotSharedOrSlave { path: PathBuf, mountpoint: PathBuf },
    #[error("reading /proc/self/mountinfo: {0}")]
    MountInfo(io::Error),
    #[error("recursive read-only mount of {0}: the runtime handler does not support recursive read-only mounts")]
    RecursiveReadOnlyUnsupported(PathBuf),
    #[error("recursive read-only mount of {0} needs private propagation")]
    RecursiveReadOnlyNotPrivate(PathBuf),
    #[error("recursive read-only mount of {0} must also be readonly")]
    RecursiveReadOnlyWritable(PathBuf),
    #[error("image volume {0:?}: {1}")]
    Volume(String, RootfsError),
    #[error("device {path}: {source}")]
    Device { path: PathBuf, source: io::Error },
    #[error("device {0} is not a device node")]
    NotADevice(PathBuf),
    #[error("device permissions {0:?}: expected a non-empty subset of \"rwm\"")]
    DevicePermissions(String),
}

/// The supplied mounts, in mount order, and what they need of the rootfs.
pub struct Binds {
    pub mounts: Vec<Mount>,
    /// `rslave` or `rshared` when a bind needs the rootfs to propagate.
    pub rootfs_propagation: Option<&'static str>,
    pub volumes: Vec<ImageVolume>,
}

/// What the binds are built from.
pub struct BindInput<'a> {
    pub mounts: &'a [BindMount],
    pub pod_files: &'a PodFiles,
    pub host_ipc: bool,
    pub readonly_rootfs: bool,
    pub image_volumes: &'a [String],
    pub volumes_dir: &'a Path,
    pub rootfs: &'a Rootfs,
    pub runtime_supports_rro: bool,
}

pub fn binds(input: &BindInput) -> Result<Binds, MountError> {
    let mut supplied = Vec::new();
    for mount in input.mounts {
        if !mount.container_path.is_absolute() {
            return Err(MountError::RelativeDestination(mount.container_path.clone()));
        }
        check_recursive_readonly(mount, input.runtime_supports_rro)?;
        supplied.push(BindMount { container_path: clean(&mount.container_path), ..mount.clone() });
    }
    let covered = |path: &Path, supplied: &[BindMount]| supplied.iter().any(|m| m.container_path == path);

    // As containerd: the pod's files are read-only only in read-only containers, so a
    // container may still edit its own /etc/hosts.
    let files = &input.pod_files;
    let shm = if input.host_ipc { Some(PathBuf::from("/dev/shm")) } else { files.shm.clone() };
    let pod = [
        ("/etc/hostname", files.hostname.clone(), input.readonly_rootfs),
        ("/etc/hosts", files.hosts.clone(), input.readonly_rootfs),
        ("/etc/resolv.conf", files.resolv_conf.clone(), input.readonly_rootfs),
        ("/dev/shm", shm, false),
    ];
    let mut extra = Vec::new();
    for (container_path, host_path, readonly) in pod {
        if let Some(host_path) = host_path
            && !covered(Path::new(container_path), &supplied)
        {
            extra.push(BindMount {
                container_path: container_path.into(),
                host_path,
                readonly,
                recursive_readonly: false,
                propagation: Propagation::Private,
            });
        }
    }

    let mut volumes = Vec::new();
    let mut volume_paths: Vec<PathBuf> = Vec::new();
    for volume in input.image_volumes {
        let container_path =
            input.rootfs.resolve(Path::new(volume)).map_err(|e| MountError::Volume(volume.clone(), e))?;
        if container_path == Path::new("/")
            || covered(&container_path, &supplied)
            || covered(&container_path, &extra)
            || volume_paths.contains(&container_path)
        {
            continue;
        }
        volume_paths.push(container_path);
    }
    volume_paths.sort();
    for (index, container_path) in volume_paths.into_iter().enumerate() {
        volumes.push(ImageVolume { container_path, host_path: input.volumes_dir.join(index.to_string()) });
    }

    let mut all: Vec<(BindMount, bool)> = supplied.into_iter().chain(extra).map(|m| (m, true)).collect();
    all.extend(volumes.iter().map(|v| {
        let mount = BindMount {
            container_path: v.container_path.clone(),
            host_path: v.host_path.clone(),
            readonly: false,
            recursive_readonly: false,
            propagation: Propagation::Private,
        };
        // The caller makes the volume's directory after the spec is built.
        (mount, false)
    }));
    // Parents before children, so a deeper mount is not hidden by a later shallower one.
    all.sort_by_key(|(m, _)| m.container_path.components().count());

    let mut mountinfo = None;
    let mut rootfs_propagation = None;
    let mut mounts = Vec::new();
    for (bind, must_exist) in all {
        let source = if must_exist {
            fs::canonicalize(&bind.host_path)
                .map_err(|source| MountError::Source { path: bind.host_path.clone(), source })?
        } else {
            bind.host_path.clone()
        };
        let mut options = vec!["rbind".to_owned()];
        match bind.propagation {
            Propagation::Private => options.push("rprivate".into()),
            Propagation::HostToContainer => {
                let info = mountinfo_text(&mut mountinfo)?;
                let mount = containing_mount(info, &source).unwrap_or_default();
                if !mount.shared && !mount.slave {
                    return Err(MountError::NotSharedOrSlave { path: source, mountpoint: mount.mountpoint });
                }
                options.push("rslave".into());
                rootfs_propagation.get_or_insert("rslave");
            }
            Propagation::Bidirectional => {
                let info = mountinfo_text(&mut mountinfo)?;
                let mount = containing_mount(info, &source).unwrap_or_default();
                if !mount.shared {
                    return Err(MountError::NotShared { path: source, mountpoint: mount.mountpoint });
                }
                options.push("rshared".into());
                rootfs_propagation = Some("rshared");
            }
        }
        let access = match (bind.recursive_readonly, bind.readonly) {
            (true, _) => "rro",
            (false, true) => "ro",
            (false, false) => "rw",
        };
        options.push(access.into());
        let mut mount = Mount::default();
        mount
            .set_destination(bind.container_path)
            .set_typ(Some("bind".into()))
            .set_source(Some(source))
            .set_options(Some(options));
        mounts.push(mount);
    }
    Ok(Binds { mounts, rootfs_propagation, volumes })
}

/// The CRI's rules for a recursive read-only mount (readonly too, private propagation) come before
/// the host's mounts and the runtime's support: a request that breaks them is refused as such,
/// on any host.
fn check_recursive_readonly(mount: &BindMount, runtime_supports_rro: bool) -> Result<(), MountError> {
    if !mount.recursive_readonly {
        return Ok(());
    }
    let path = || mount.host_path.clone();
    if !mount.readonly {
        return Err(MountError::RecursiveReadOnlyWritable(path()));
    }
    if mount.propagation != Propagation::Private {
        return Err(MountError::RecursiveReadOnlyNotPrivate(path()));
    }
    if !runtime_supports_rro {
        return Err(MountError::RecursiveReadOnlyUnsupported(path()));
    }
    Ok(())
}

fn mountinfo_text(cache: &mut Option<String>) -> Result<&str, MountError> {
    if cache.is_none() {
        *cache = Some(fs::read_to_string("/proc/self/mountinfo").map_err(MountError::MountInfo)?);
    }
    Ok(cache.as_deref().unwrap_or_default())
}

/// One line of `/proc/self/mountinfo`, as far as propagation goes.
#[derive(Debug, Default, PartialEq, Eq)]
struct MountInfo {
    mountpoint: PathBuf,
    shared: bool,
    slave: bool,
}

/// The mount `path` lives on: the deepest mountpoint above it, the last one mounted if
/// several stack there.
fn containing_mount(mountinfo: &str, path: &Path) -> Option<MountInfo> {
    let mut best: Option<MountInfo> = None;
    for line in mountinfo.lines() {
        // id parent major:minor root mountpoint options [optional...] - fstype source super
        let fields: Vec<&str> = line.split(' ').collect();
        let Some(mountpoint) = fields.get(4).map(|m| PathBuf::from(unescape(m))) else { continue };
        if !path.starts_with(&mountpoint) {
            continue;
        }
        if best.as_ref().is_some_and(|b| b.mountpoint.components().count() > mountpoint.components().count()) {
            continue;
        }
        let optional = fields.iter().skip(6).take_while(|f| **f != "-");
        let (mut shared, mut slave) = (false, false);
        for field in optional {
            shared |= field.starts_with("shared:");
            slave |= field.starts_with("master:");
        }
        best = Some(MountInfo { mountpoint, shared, slave });
    }
    best
}

/// mountinfo writes space, tab, newline and backslash as `\ooo`.
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\'
            && let Some(digits) = bytes.get(i + 1..i + 4)
            && digits.iter().all(|d| (b'0'..=b'7').contains(d))
        {
            out.push(digits.iter().fold(0u8, |value, d| value.wrapping_mul(8).wrapping_add(d - b'0')));
            i += 4;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Directories under /dev that hold no devices a container should get (or are mounted anew).
const SKIPPED_DEV_DIRS: [&str; 7] = ["pts", "shm", "fd", "mqueue", ".lxc", ".lxd-mounts", ".udev"];

/// The device nodes and their device cgroup rules for the CRI's devices.
pub fn devices(requested: &[Device]) -> Result<(Vec<LinuxDevice>, Vec<LinuxDeviceCgroup>), MountError> {
    let mut nodes = Vec::new();
    for device in requested {
        let permissions = &device.permissions;
        let valid = !permissions.is_empty()
            && permissions.chars().all(|c| "rwm".contains(c))
            && permissions.chars().enumerate().all(|(i, c)| !permissions[..i].contains(c));
        if !valid {
            return Err(MountError::DevicePermissions(permissions.clone()));
        }
        let host = fs::canonicalize(&device.host_path)
            .map_err(|source| MountError::Device { path: device.host_path.clone(), source })?;
        let found = if host.is_dir() {
            walk_devices(&host, &clean(&device.container_path))?
        } else {
            let node = device_node(&host)?.ok_or_else(|| MountError::NotADevice(device.host_path.clone()))?;
            vec![(clean(&device.container_path), node)]
        };
        nodes.extend(found.into_iter().map(|(path, node)| (path, node, permissions.clone())));
    }
    Ok(as_spec(nodes))
}

/// Every device node of the host's `/dev`, at the same paths, with full access: what a
/// privileged container gets (listed, not a blanket rule, so nothing else is reachable).
pub fn host_devices() -> Result<(Vec<LinuxDevice>, Vec<LinuxDeviceCgroup>), MountError> {
    let found = walk_devices(Path::new("/dev"), Path::new("/dev"))?;
    Ok(as_spec(found.into_iter().map(|(path, node)| (path, node, "rwm".to_owned())).collect()))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Node {
    typ: LinuxDeviceType,
    major: i64,
    minor: i64,
    mode: u32,
    uid: u32,
    gid: u32,
}

/// The block or character device at `path` (not following a final symlink), `None` for
/// anything else.
fn device_node(path: &Path) -> Result<Option<Node>, MountError> {
    let meta = fs::symlink_metadata(path).map_err(|source| MountError::Device { path: path.to_owned(), source })?;
    let typ = match meta.file_type() {
        t if t.is_block_device() => LinuxDeviceType::B,
        t if t.is_char_device() => LinuxDeviceType::C,
        _ => return Ok(None),
    };
    let rdev = meta.rdev();
    Ok(Some(Node {
        typ,
        major: libc::major(rdev) as i64,
        minor: libc::minor(rdev) as i64,
        mode: meta.mode() & 0o7777,
        uid: meta.uid(),
        gid: meta.gid(),
    }))
}

fn walk_devices(dir: &Path, container_dir: &Path) -> Result<Vec<(PathBuf, Node)>, MountError> {
    let error = |source| MountError::Device { path: dir.to_owned(), source };
    let mut found = Vec::new();
    let mut entries: Vec<_> = fs::read_dir(dir).map_err(error)?.collect::<Result<_, _>>().map_err(error)?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let name = entry.file_name();
        let file_type = entry.file_type().map_err(error)?;
        if file_type.is_dir() {
            if !SKIPPED_DEV_DIRS.iter().any(|s| name == *s) {
                found.extend(walk_devices(&entry.path(), &container_dir.join(&name))?);
            }
        } else if name != "console" {
            // A node that vanished while walking is no device.
            match device_node(&entry.path()) {
                Ok(Some(node)) => found.push((container_dir.join(&name), node)),
                Ok(None) => {}
                Err(MountError::Device { source, .. }) if source.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
    }
    Ok(found)
}

fn as_spec(nodes: Vec<(PathBuf, Node, String)>) -> (Vec<LinuxDevice>, Vec<LinuxDeviceCgroup>) {
    let mut devices = Vec::new();
    let mut rules = Vec::new();
    for (path, node, access) in nodes {
        let mut device = LinuxDevice::default();
        device
            .set_path(path)
            .set_typ(node.typ)
            .set_major(node.major)
            .set_minor(node.minor)
            .set_file_mode(Some(node.mode))
            .set_uid(Some(node.uid))
            .set_gid(Some(node.gid));
        devices.push(device);
        let mut rule = LinuxDeviceCgroup::default();
        rule.set_allow(true)
            .set_typ(Some(node.typ))
            .set_major(Some(node.major))
            .set_minor(Some(node.minor))
            .set_access(Some(access));
        rules.push(rule);
    }
    (devices, rules)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MOUNTINFO: &str = "\
22 1 0:21 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
23 22 0:22 / /var/lib/kubelet rw,relatime shared:5 - ext4 /dev/sda2 rw
24 22 0:23 / /mnt/slave rw,relatime master:7 - ext4 /dev/sda3 rw
25 22 0:24 / /mnt/private rw,relatime - ext4 /dev/sda4 rw
26 25 0:25 / /mnt/private/with\\040space rw,relatime shared:9 master:3 - tmpfs tmpfs rw
27 22 0:26 / /mnt/stacked rw shared:10 - tmpfs tmpfs rw
28 22 0:27 / /mnt/stacked rw - tmpfs tmpfs rw
";

    #[test]
    fn the_containing_mount_decides_propagation() {
        let find = |p: &str| containing_mount(MOUNTINFO, Path::new(p)).unwrap();
        let kubelet = find("/var/lib/kubelet/pods/x");
        assert_eq!(
            (kubelet.mountpoint.to_str().unwrap(), kubelet.shared, kubelet.slave),
            ("/var/lib/kubelet", true, false)
        );
        assert_eq!((find("/mnt/slave/a").shared, find("/mnt/slave/a").slave), (false, true));
        assert_eq!((find("/mnt/private/a").shared, find("/mnt/private/a").slave), (false, false));
        let spaced = find("/mnt/private/with space/x");
        assert_eq!(
            (spaced.mountpoint.to_str().unwrap(), spaced.shared, spaced.slave),
            ("/mnt/private/with space", true, true)
        );
        // The later of two mounts on one mountpoint is the one paths reach.
        assert!(!find("/mnt/stacked/x").shared);
        // A sibling whose name only starts like a mountpoint is not under it.
        assert_eq!(find("/var/lib/kubeletx").mountpoint, Path::new("/"));
    }

    #[test]
    fn device_permissions_are_checked() {
        for bad in ["", "rwx", "rr", "RW"] {
            let device =
                Device { host_path: "/dev/null".into(), container_path: "/dev/n".into(), permissions: bad.into() };
            assert!(matches!(devices(&[device]), Err(MountError::DevicePermissions(_))), "{bad:?}");
        }
    }

    #[test]
    fn devices_are_listed_with_their_numbers() {
        let device =
            Device { host_path: "/dev/null".into(), container_path: "/dev/mynull".into(), permissions: "rw".into() };
        let (nodes, rules) = devices(&[device]).unwrap();
        assert_eq!(nodes.len(), 1);
        assert_eq!(
            (nodes[0].path().to_str().unwrap(), nodes[0].typ(), nodes[0].major(), nodes[0].minor()),
            ("/dev/mynull", LinuxDeviceType::C, 1, 3)
        );
        let json = serde_json::to_value(&rules[0]).unwrap();
        assert_eq!(json, serde_json::json!({"allow": true, "type": "c", "major": 1, "minor": 3, "access": "rw"}));

        let not_device =
            Device { host_path: "/etc/hostname".into(), container_path: "/x".into(), permissions: "r".into() };
        assert!(matches!(devices(&[not_device]), Err(MountError::NotADevice(_))));
        let missing =
            Device { host_path: "/dev/nope-nope".into(), container_path: "/x".into(), permissions: "r".into() };
        assert!(matches!(devices(&[missing]), Err(MountError::Device { .. })));
    }

    #[test]
    fn host_devices_are_the_nodes_of_dev() {
        let (nodes, rules) = host_devices().unwrap();
        assert_eq!(nodes.len(), rules.len());
        let paths: Vec<_> = nodes.iter().map(|d| d.path().to_str().unwrap().to_owned()).collect();
        assert!(paths.contains(&"/dev/null".to_owned()), "{paths:?}");
        assert!(!paths.iter().any(|p| p.starts_with("/dev/pts/") || p == "/dev/console"));
    }
}
