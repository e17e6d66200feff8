use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use super::layer::{Layer, LayerBuilder};
use crate::lab::error::LabError;

/// Debian's busybox-static: a static binary, so the lab's images need no libc.
pub const BUSYBOX: &str = "/bin/busybox";

/// Users the lab's tests run as: by uid, by name (`www-data`), and with a primary group that
/// differs from the uid (`user1003`, gid 1004).
const PASSWD: &str = "\
root:x:0:0:root:/root:/bin/sh
daemon:x:1:1:daemon:/usr/sbin:/bin/false
www-data:x:33:33:www-data:/var/www:/bin/false
user1002:x:1002:1002:user1002:/home/user1002:/bin/sh
user1003:x:1003:1004:user1003:/home/user1003:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
";

/// `group1004` lists `user1002` so that tests can see a supplementary group resolved from the
/// image.
const GROUP: &str = "\
root:x:0:
daemon:x:1:
www-data:x:33:
group1002:x:1002:
group1004:x:1004:user1002
nogroup:x:65534:
";

/// The busybox root filesystem: `/bin/busybox`, every applet as a hard link to it, and the
/// account files. `/etc/hosts` and friends are left out because the runtime provides them.
pub fn busybox_layer() -> Result<Layer, LabError> {
    let binary = std::fs::read(BUSYBOX).map_err(LabError::io("cannot read", BUSYBOX))?;
    let applets = applets(Path::new(BUSYBOX))?;

    let mut layer = LayerBuilder::default();
    layer
        .dir("/bin", 0o755)?
        .dir("/etc", 0o755)?
        .dir("/home", 0o755)?
        .dir("/root", 0o700)?
        .dir("/tmp", 0o1777)?
        .dir("/var", 0o755)?
        .file(BUSYBOX, 0o755, &binary)?;
    for applet in &applets {
        layer.hard_link(&format!("/bin/{applet}"), BUSYBOX)?;
    }
    layer.file("/etc/passwd", 0o644, PASSWD.as_bytes())?.file("/etc/group", 0o644, GROUP.as_bytes())?;
    layer.finish()
}

/// The applet names `program --list` prints, minus any that would overwrite `program` itself or
/// escape `/bin`.
fn applets(program: &Path) -> Result<BTreeSet<String>, LabError> {
    let output = Command::new(program).arg("--list").output().map_err(LabError::io("cannot run", program))?;
    let own_name = program.file_name().map(|n| n.to_string_lossy().into_owned());
    let applets: BTreeSet<String> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(str::trim)
        .filter(|name| !name.is_empty() && !name.contains('/') && Some(*name) != own_name.as_deref())
        .map(str::to_owned)
        .collect();
    if !output.status.success() || applets.is_empty() {
        return Err(LabError::NoApplets { program: program.to_path_buf() });
    }
    Ok(applets)
}
