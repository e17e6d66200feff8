//! What ordinary layers unpack to.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{FileTypeExt, MetadataExt};

use tar::EntryType;

use super::{DIR, FILE, Layer, MTIME, Sandbox, attrs, is_whiteout, meta, xattr, xattrs};
use crate::digest::Digest;
use crate::unpack::{Compression, Limits, unpack};

fn mode(path: &std::path::Path) -> u32 {
    meta(path).mode() & 0o7777
}

#[test]
fn every_entry_type_with_its_metadata() {
    let sandbox = Sandbox::new();
    let layer = Layer::new()
        .dir("etc", attrs(0o755, 0, 0, MTIME + 1))
        .pax(&[("SCHILY.xattr.user.origin", b"layer"), ("SCHILY.xattr.trusted.bin", b"\0\x01\xff")])
        .file("etc/passwd", b"root:x:0:0::/root:/bin/sh\n", attrs(0o644, 0, 0, MTIME + 2))
        .file("bin/su", b"#!su", attrs(0o4755, 0, 0, MTIME))
        .file("home/user/notes", b"mine", attrs(0o2750, 1000, 1001, MTIME))
        .dir("tmp", attrs(0o1777, 0, 0, MTIME))
        .pax(&[("SCHILY.xattr.trusted.dir", b"yes")])
        .dir("shared", attrs(0o2775, 1000, 100, MTIME + 3))
        .pax(&[("SCHILY.xattr.trusted.link", b"on the link")])
        .symlink("etc/localtime", "../../sentinel/secret", attrs(0o777, 1000, 1001, MTIME + 4))
        .hard_link("bin/su2", "bin/su")
        .symlink("link", "etc/passwd", FILE)
        .hard_link("link2", "link")
        .node("dev/null", EntryType::Char, 1, 3, attrs(0o666, 0, 0, MTIME + 5))
        .node("dev/loop0", EntryType::Block, 7, 0, attrs(0o660, 0, 6, MTIME))
        .pax(&[("SCHILY.xattr.trusted.fifo", b"1")])
        .node("run/fifo", EntryType::Fifo, 0, 0, attrs(0o620, 1, 2, MTIME + 6))
        .tar();
    let unpacked = sandbox.unpack(&layer).unwrap();

    let etc = meta(&sandbox.path("etc"));
    assert!(etc.is_dir());
    assert_eq!(
        (mode(&sandbox.path("etc")), etc.mtime()),
        (0o755, (MTIME + 1) as i64),
        "directory time set after its contents"
    );

    let passwd = sandbox.path("etc/passwd");
    // Before reading it, which moves the access time.
    assert_eq!(
        (mode(&passwd), meta(&passwd).mtime(), meta(&passwd).atime()),
        (0o644, (MTIME + 2) as i64, (MTIME + 2) as i64)
    );
    assert_eq!(fs::read(&passwd).unwrap(), b"root:x:0:0::/root:/bin/sh\n");
    assert_eq!(
        xattrs(&passwd),
        [(b"trusted.bin".to_vec(), b"\0\x01\xff".to_vec()), (b"user.origin".to_vec(), b"layer".to_vec())]
    );

    assert_eq!(mode(&sandbox.path("bin/su")), 0o4755, "setuid survives the chown");
    assert_eq!(mode(&sandbox.path("bin")), 0o755, "a directory the layer left out");
    let notes = meta(&sandbox.path("home/user/notes"));
    assert_eq!((notes.mode() & 0o7777, notes.uid(), notes.gid()), (0o2750, 1000, 1001));
    assert_eq!(mode(&sandbox.path("tmp")), 0o1777);
    let shared = meta(&sandbox.path("shared"));
    assert_eq!(
        (shared.mode() & 0o7777, shared.uid(), shared.gid(), shared.mtime()),
        (0o2775, 1000, 100, (MTIME + 3) as i64)
    );
    assert_eq!(xattr(&sandbox.path("shared"), "trusted.dir").as_deref(), Some(&b"yes"[..]));

    let localtime = sandbox.path("etc/localtime");
    let link = meta(&localtime);
    assert!(link.is_symlink());
    assert_eq!(fs::read_link(&localtime).unwrap().to_str(), Some("../../sentinel/secret"));
    assert_eq!((link.uid(), link.gid(), link.mtime()), (1000, 1001, (MTIME + 4) as i64));
    assert_eq!(xattr(&localtime, "trusted.link").as_deref(), Some(&b"on the link"[..]));

    assert_eq!(meta(&sandbox.path("bin/su2")).ino(), meta(&sandbox.path("bin/su")).ino());
    let link2 = meta(&sandbox.path("link2"));
    assert!(link2.is_symlink(), "a hard link to a symlink links the symlink itself");
    assert_eq!(link2.ino(), meta(&sandbox.path("link")).ino());

    let null = meta(&sandbox.path("dev/null"));
    assert!(null.file_type().is_char_device());
    assert_eq!((null.rdev(), null.mode() & 0o7777, null.mtime()), (libc::makedev(1, 3), 0o666, (MTIME + 5) as i64));
    let loop0 = meta(&sandbox.path("dev/loop0"));
    assert!(loop0.file_type().is_block_device());
    assert_eq!((loop0.rdev(), loop0.mode() & 0o7777, loop0.gid()), (libc::makedev(7, 0), 0o660, 6));
    let fifo = meta(&sandbox.path("run/fifo"));
    assert!(fifo.file_type().is_fifo());
    assert_eq!((fifo.mode() & 0o7777, fifo.uid(), fifo.gid(), fifo.mtime()), (0o620, 1, 2, (MTIME + 6) as i64));
    assert_eq!(xattr(&sandbox.path("run/fifo"), "trusted.fifo").as_deref(), Some(&b"1"[..]));

    assert_eq!(unpacked.bytes, 26 + 4 + 4);
    // Three files, etc, tmp, shared, two symlinks, three nodes, and bin, home, home/user, dev, run.
    assert_eq!(unpacked.inodes, 3 + 3 + 2 + 3 + 5);
    assert_eq!(unpacked.diff_id, Digest::of(&layer));
    sandbox.check_outside();
}

#[test]
fn long_names_and_precise_times() {
    let sandbox = Sandbox::new();
    let deep = format!("{}/file", ["directory-with-a-long-name"; 8].join("/"));
    let target = format!("/{}", ["target"; 30].join("/"));
    let layer = Layer::new()
        .file(&deep, b"deep", FILE)
        .symlink("long-link", &target, FILE)
        .pax(&[("path", b"pax/named"), ("mtime", b"1600000000.123456789")])
        .file("ignored-by-pax", b"pax", FILE)
        .tar();
    sandbox.unpack(&layer).unwrap();
    assert_eq!(fs::read(sandbox.path(&deep)).unwrap(), b"deep");
    assert_eq!(fs::read_link(sandbox.path("long-link")).unwrap().to_str(), Some(target.as_str()));
    let named = meta(&sandbox.path("pax/named"));
    assert_eq!((named.mtime(), named.mtime_nsec()), (1_600_000_000, 123_456_789));
    assert!(!sandbox.path("ignored-by-pax").exists());
}

#[test]
fn later_entries_replace_earlier_ones() {
    let sandbox = Sandbox::new();
    let layer = Layer::new()
        .file("f", b"one", attrs(0o644, 1, 1, MTIME))
        .file("f", b"two", attrs(0o600, 2, 2, MTIME))
        .dir("d", DIR)
        .dir("d/sub", DIR)
        .file("d/sub/x", b"x", FILE)
        .file("d", b"now a file", FILE)
        .file("g", b"was a file", FILE)
        .dir("g", attrs(0o700, 0, 0, MTIME))
        .file("g/inside", b"", FILE)
        .dir("k", attrs(0o700, 0, 0, MTIME))
        .file("k/keep", b"kept", FILE)
        .dir("k", attrs(0o750, 5, 6, MTIME + 9))
        .symlink("s", "../sentinel/secret", FILE)
        .file("s", b"not through", FILE)
        .hard_link("h", "f")
        .file("h", b"unlinked first", FILE)
        .dir("t/a/b/c", DIR)
        .symlink("t", "elsewhere", FILE)
        .tar();
    sandbox.unpack(&layer).unwrap();

    let f = meta(&sandbox.path("f"));
    assert_eq!((fs::read(sandbox.path("f")).unwrap(), f.mode() & 0o7777, f.uid()), (b"two".to_vec(), 0o600, 2));
    assert_eq!(fs::read(sandbox.path("d")).unwrap(), b"now a file");
    assert!(meta(&sandbox.path("g")).is_dir());
    assert!(sandbox.path("g/inside").exists());
    let k = meta(&sandbox.path("k"));
    assert_eq!((k.mode() & 0o7777, k.uid(), k.gid(), k.mtime()), (0o750, 5, 6, (MTIME + 9) as i64));
    assert_eq!(fs::read(sandbox.path("k/keep")).unwrap(), b"kept", "a directory over a directory keeps its contents");
    assert_eq!(fs::read(sandbox.path("s")).unwrap(), b"not through");
    assert_eq!(fs::read(sandbox.path("h")).unwrap(), b"unlinked first");
    assert_eq!(meta(&sandbox.path("h")).nlink(), 1);
    assert!(meta(&sandbox.path("t")).is_symlink());
    sandbox.check_outside();
}

#[test]
fn whiteouts_become_overlay_whiteouts() {
    let sandbox = Sandbox::new();
    let layer = Layer::new()
        .file(".wh.gone", b"", FILE)
        .file("dir/.wh.sub", b"", FILE)
        .dir("existing", DIR)
        .file("existing/.wh..wh..opq", b"", FILE)
        .file("implied/.wh..wh..opq", b"", FILE)
        .file(".wh.again", b"", FILE)
        .dir("again", DIR)
        .file("again/new", b"new", FILE)
        .dir("removed/sub", DIR)
        .file(".wh.removed", b"", FILE)
        .tar();
    let unpacked = sandbox.unpack(&layer).unwrap();
    assert!(is_whiteout(&sandbox.path("gone")));
    assert!(is_whiteout(&sandbox.path("dir/sub")));
    assert!(is_whiteout(&sandbox.path("removed")), "a whiteout replaces what the layer itself made");
    let opaque = |path: &str| xattr(&sandbox.path(path), "trusted.overlay.opaque");
    assert_eq!(opaque("existing").as_deref(), Some(&b"y"[..]));
    assert_eq!(opaque("implied").as_deref(), Some(&b"y"[..]));
    assert_eq!(opaque("again").as_deref(), Some(&b"y"[..]), "a directory remade after its whiteout hides the old");
    assert_eq!(opaque("dir"), None);
    assert_eq!(fs::read(sandbox.path("again/new")).unwrap(), b"new");
    for marker in [".wh.gone", "dir/.wh.sub", "existing/.wh..wh..opq", ".wh.again"] {
        assert!(fs::symlink_metadata(sandbox.path(marker)).is_err(), "{marker}");
    }
    assert_eq!(unpacked.bytes, 3);
    sandbox.check_outside();
}

#[test]
fn sparse_files() {
    let sandbox = Sandbox::new();
    let layer = Layer::new().sparse("sparse", 16 << 20, 8 << 20, b"data").tar();
    assert!(layer.len() < 1 << 20);
    assert_eq!(layer[156], b'S', "a GNU sparse entry");
    let unpacked = sandbox.unpack(&layer).unwrap();
    let content = fs::read(sandbox.path("sparse")).unwrap();
    assert_eq!(content.len(), 16 << 20);
    assert_eq!(&content[8 << 20..(8 << 20) + 4], b"data");
    assert_eq!(content.iter().filter(|&&b| b != 0).count(), 4);
    assert_eq!(unpacked.bytes, 16 << 20);
}

#[test]
fn missing_destination() {
    let sandbox = Sandbox::new();
    let missing = sandbox.dest.join("missing");
    let error = unpack(&Layer::new().tar()[..], Compression::None, &missing, &Limits::default()).unwrap_err();
    assert!(matches!(&error, crate::unpack::UnpackError::Destination { path, .. } if *path == missing), "{error}");
}

#[test]
fn root_entry_sets_the_root_metadata() {
    let sandbox = Sandbox::new();
    let layer = Layer::new().dir("./", attrs(0o711, 7, 8, MTIME + 1)).file("a", b"", FILE).tar();
    sandbox.unpack(&layer).unwrap();
    let root = meta(&sandbox.dest);
    assert_eq!((root.mode() & 0o7777, root.uid(), root.gid(), root.mtime()), (0o711, 7, 8, (MTIME + 1) as i64));
    sandbox.check_outside();
}

#[test]
fn plain_gzip_and_zstd_layers() {
    let layer = Layer::new()
        .dir("etc", DIR)
        .file("etc/hosts", b"127.0.0.1 localhost\n", FILE)
        .file("big", &vec![b'x'; 3 << 20], FILE)
        .tar();
    let gzip = |data: &[u8]| {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        encoder.write_all(data).unwrap();
        encoder.finish().unwrap()
    };
    // As pigz writes it: several gzip members, one after another.
    let mut multi_member = gzip(&layer[..layer.len() / 3]);
    multi_member.extend(gzip(&layer[layer.len() / 3..]));
    let blobs = [
        (Compression::None, layer.clone()),
        (Compression::Gzip, gzip(&layer)),
        (Compression::Gzip, multi_member),
        (Compression::Zstd, zstd::encode_all(&layer[..], 3).unwrap()),
    ];
    for (compression, blob) in blobs {
        assert_eq!(Compression::sniff(&blob), compression);
        let sandbox = Sandbox::new();
        let unpacked = unpack(&blob[..], compression, &sandbox.dest, &Limits::default()).unwrap();
        assert_eq!(fs::read(sandbox.path("etc/hosts")).unwrap(), b"127.0.0.1 localhost\n", "{compression:?}");
        assert_eq!(fs::read(sandbox.path("big")).unwrap().len(), 3 << 20);
        assert_eq!(unpacked.diff_id, Digest::of(&layer), "{compression:?}");
        assert_eq!(unpacked.bytes, 20 + (3 << 20));
    }
}
