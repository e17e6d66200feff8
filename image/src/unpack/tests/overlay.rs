//! The kernel's overlayfs honours what unpacking produces.

use std::fs;
use std::path::{Path, PathBuf};

use nix::mount::{MntFlags, MsFlags, mount, umount2};

use super::{DIR, FILE, Layer, Sandbox};

/// Unmounts on drop, so a failing assertion leaves nothing mounted.
struct Mounted(PathBuf);

impl Drop for Mounted {
    fn drop(&mut self) {
        if let Err(e) = umount2(&self.0, MntFlags::MNT_DETACH) {
            eprintln!("unmounting {}: {e}", self.0.display());
        }
    }
}

fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> =
        fs::read_dir(dir).unwrap().map(|entry| entry.unwrap().file_name().into_string().unwrap()).collect();
    names.sort();
    names
}

#[test]
fn overlayfs_honours_whiteouts_and_opaque_dirs() {
    let sandbox = Sandbox::new();
    let base = sandbox.dest.parent().unwrap().to_owned();
    let lower = base.join("lower");
    for dir in ["opaque", "remade", "merged-dir"] {
        fs::create_dir_all(lower.join(dir)).unwrap();
    }
    for file in ["gone", "kept", "opaque/old", "remade/old", "merged-dir/old"] {
        fs::write(lower.join(file), file).unwrap();
    }
    let layer = Layer::new()
        .file(".wh.gone", b"", FILE)
        .dir("opaque", DIR)
        .file("opaque/.wh..wh..opq", b"", FILE)
        .file("opaque/new", b"new", FILE)
        .file(".wh.remade", b"", FILE)
        .dir("remade", DIR)
        .file("remade/new", b"new", FILE)
        .file("merged-dir/new", b"new", FILE)
        .tar();
    sandbox.unpack(&layer).unwrap();

    let merged = base.join("merged");
    fs::create_dir(&merged).unwrap();
    let options = format!("lowerdir={}:{}", sandbox.dest.display(), lower.display());
    mount(Some("overlay"), &merged, Some("overlay"), MsFlags::MS_RDONLY, Some(options.as_str())).unwrap();
    let _mounted = Mounted(merged.clone());

    assert_eq!(names(&merged), ["kept", "merged-dir", "opaque", "remade"]);
    assert_eq!(names(&merged.join("opaque")), ["new"]);
    assert_eq!(names(&merged.join("remade")), ["new"]);
    assert_eq!(names(&merged.join("merged-dir")), ["new", "old"]);
    assert_eq!(fs::read(merged.join("kept")).unwrap(), b"kept");
}
