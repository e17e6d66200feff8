//! Builds the built-in pause program as a static executable that the pod crate embeds, so a
//! pod's infrastructure process needs no image and no shared libraries.

use std::env;
use std::path::PathBuf;
use std::process::Command;

fn main() {
    let src = "pause/pause.c";
    println!("cargo:rerun-if-changed={src}");
    println!("cargo:rerun-if-env-changed=CC");
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("OUT_DIR")).join("crisp-pause");
    let cc = env::var("CC").unwrap_or_else(|_| "cc".into());
    let status = Command::new(&cc)
        .args(["-static", "-Os", "-s", "-Wall", "-Werror", "-o"])
        .arg(&out)
        .arg(src)
        .status()
        .unwrap_or_else(|e| panic!("running {cc} to build the pause program: {e}"));
    assert!(status.success(), "{cc} failed to build {src} (a static libc is needed: install libc6-dev)");
}
