//! Layers that try to reach outside the destination, or to exhaust the machine: each is refused
//! with its own error, and nothing outside the destination changes.

use std::fs;
use std::io::Write;
use std::os::unix::fs::MetadataExt;

use tar::EntryType;

use super::{DIR, FILE, Layer, Sandbox, attrs, meta};
use crate::unpack::meter::MAX_HEADER_BYTES;
use crate::unpack::{Compression, LimitExceeded, Limits, UnpackError, unpack};

fn refused(sandbox: &Sandbox, layer: Layer) -> UnpackError {
    let error = sandbox.unpack(&layer.tar()).expect_err("the layer should be refused");
    sandbox.check_outside();
    error
}

#[test]
fn absolute_paths() {
    let sandbox = Sandbox::new();
    let pwned = format!("{}/pwned", sandbox.sentinel_str());
    let error = refused(&sandbox, Layer::new().raw(EntryType::Regular, pwned.as_bytes(), b"", b"pwned"));
    assert!(matches!(&error, UnpackError::AbsolutePath { path } if *path == pwned), "{error}");
    assert!(error.to_string().contains(&pwned));
    let error = refused(&sandbox, Layer::new().pax(&[("path", pwned.as_bytes())]).file("harmless", b"pwned", FILE));
    assert!(matches!(error, UnpackError::AbsolutePath { .. }), "{error}");
    let secret = format!("{}/secret", sandbox.sentinel_str());
    let error = refused(&sandbox, Layer::new().raw(EntryType::Directory, secret.as_bytes(), b"", b""));
    assert!(matches!(error, UnpackError::AbsolutePath { .. }), "{error}");
}

#[test]
fn parent_components() {
    let sandbox = Sandbox::new();
    let escapes: [(EntryType, &[u8], &[u8]); 8] = [
        (EntryType::Regular, b"../sentinel/pwned", b""),
        (EntryType::Regular, b"../sentinel/secret", b""),
        (EntryType::Regular, b"a/../../sentinel/secret", b""),
        (EntryType::Regular, b"./../sentinel/pwned", b""),
        (EntryType::Directory, b"../sentinel/newdir", b""),
        (EntryType::Symlink, b"../sentinel/link", b"secret"),
        (EntryType::Regular, b"../sentinel/.wh.secret", b""),
        (EntryType::Regular, b"../sentinel/.wh..wh..opq", b""),
    ];
    for (kind, name, link) in escapes {
        let error = refused(&sandbox, Layer::new().raw(kind, name, link, b"pwned"));
        assert!(matches!(error, UnpackError::ParentComponent { .. }), "{error}");
    }
    let error = refused(&sandbox, Layer::new().dir("a", DIR).raw(EntryType::Regular, b"a/../b", b"", b""));
    assert!(
        matches!(error, UnpackError::ParentComponent { .. }),
        "inside the layer, but refused all the same: {error}"
    );
}

#[test]
fn writing_through_symlinks() {
    let links: [fn(&str) -> String; 4] = [
        |sentinel| sentinel.to_owned(),
        |_| "../sentinel".to_owned(),
        // Up to the sandbox, not to /: were the unpacker to follow it, it would write there.
        |_| "..".to_owned(),
        |sentinel| format!("{sentinel}-not-yet"),
    ];
    let followers: [fn(Layer) -> Layer; 10] = [
        |layer| layer.file("a/pwned", b"pwned", FILE),
        |layer| layer.file("a/secret", b"pwned", attrs(0o777, 0, 0, 0)),
        |layer| layer.dir("a/sub", attrs(0o777, 0, 0, 0)),
        |layer| layer.dir("a/new/deeper", DIR),
        |layer| layer.symlink("a/link", "secret", FILE),
        |layer| layer.file("f", b"", FILE).hard_link("a/hard", "f"),
        |layer| layer.node("a/fifo", EntryType::Fifo, 0, 0, FILE),
        |layer| layer.file("a/.wh.secret", b"", FILE),
        |layer| layer.file("a/.wh..wh..opq", b"", FILE),
        |layer| layer.file("a/sub/inner", b"pwned", FILE),
    ];
    for link in links {
        for follow in followers {
            let sandbox = Sandbox::new();
            let link = link(sandbox.sentinel_str());
            let error = refused(&sandbox, follow(Layer::new().symlink("a", &link, FILE)));
            assert!(
                matches!(&error, UnpackError::ThroughSymlink { component, .. } if component == "a"),
                "{link}: {error}"
            );
        }
    }
    let sandbox = Sandbox::new();
    let error = refused(&sandbox, Layer::new().symlink("up", "..", FILE).file("up/sentinel/secret", b"pwned", FILE));
    assert!(matches!(error, UnpackError::ThroughSymlink { .. }), "{error}");
}

#[test]
fn hard_links_leaving_the_layer() {
    let sandbox = Sandbox::new();
    let absolute = format!("{}/secret", sandbox.sentinel_str());
    for target in [&b"../sentinel/secret"[..], b"a/../../sentinel/secret", absolute.as_bytes()] {
        let error = refused(&sandbox, Layer::new().raw(EntryType::Link, b"h", target, b""));
        assert!(matches!(error, UnpackError::LinkOutside { .. }), "{error}");
    }
    let through = Layer::new().symlink("a", sandbox.sentinel_str(), FILE).hard_link("h", "a/secret");
    let error = refused(&sandbox, through);
    assert!(matches!(&error, UnpackError::ThroughSymlink { component, .. } if component == "a"), "{error}");
    let up = Layer::new().symlink("up", "..", FILE).hard_link("h", "up/sentinel/secret");
    assert!(matches!(refused(&sandbox, up), UnpackError::ThroughSymlink { .. }));
    let to_whiteout = Layer::new().file(".wh.x", b"", FILE).hard_link("h", ".wh.x");
    assert!(matches!(refused(&sandbox, to_whiteout), UnpackError::Whiteout { .. }));
}

/// A symlink out of the layer and a hard link to it: nothing later may change the symlink's
/// target, whether by content, mode, owner, times or xattrs. These layers are harmless, so they
/// unpack.
#[test]
fn metadata_never_follows_links() {
    let secret = |sandbox: &Sandbox| format!("{}/secret", sandbox.sentinel_str());
    let setups: [fn(Layer, &str) -> Layer; 3] = [
        |layer, secret| layer.symlink("s", secret, attrs(0o777, 0, 0, 1)).hard_link("h", "s"),
        |layer, secret| {
            layer
                .pax(&[("SCHILY.xattr.trusted.pwned", b"1")])
                .symlink("s", secret, attrs(0o4777, 1, 1, 1))
                .hard_link("h", "s")
        },
        |layer, secret| layer.symlink("s", secret, FILE).raw(EntryType::Link, b"h", b"s", b""),
    ];
    let followers: [fn(Layer) -> Layer; 6] = [
        |layer| layer.file("h", b"pwned", attrs(0o6777, 0, 0, 1)),
        |layer| layer.dir("h", attrs(0o777, 0, 0, 1)),
        |layer| layer.node("h", EntryType::Fifo, 0, 0, attrs(0o777, 0, 0, 1)),
        |layer| layer.pax(&[("SCHILY.xattr.trusted.pwned", b"1")]).hard_link("h2", "h"),
        |layer| layer.symlink("h", "/elsewhere", attrs(0o777, 3, 3, 1)),
        |layer| layer.file(".wh.h", b"", FILE),
    ];
    for setup in setups {
        for follow in followers {
            let sandbox = Sandbox::new();
            let layer = follow(setup(Layer::new(), &secret(&sandbox)));
            sandbox.unpack(&layer.tar()).unwrap();
            sandbox.check_outside();
            assert!(meta(&sandbox.path("s")).is_symlink());
        }
    }
    let sandbox = Sandbox::new();
    let layer = Layer::new().symlink("s", &secret(&sandbox), FILE).hard_link("h", "s").file("h", b"mine", FILE);
    sandbox.unpack(&layer.tar()).unwrap();
    assert_eq!(fs::read(sandbox.path("h")).unwrap(), b"mine");
    assert_eq!(fs::read_link(sandbox.path("s")).unwrap().to_str(), Some(secret(&sandbox).as_str()));
    sandbox.check_outside();
}

#[test]
fn malformed_whiteouts() {
    let sandbox = Sandbox::new();
    for name in
        [".wh.", ".wh..", ".wh...", "dir/.wh...", ".wh..wh..wh..opq", ".wh..wh.plnk", ".wh.dir/x", "a/.wh..wh..opq/x"]
    {
        let error = refused(&sandbox, Layer::new().raw(EntryType::Regular, name.as_bytes(), b"", b""));
        assert!(matches!(error, UnpackError::Whiteout { .. }), "{name}: {error}");
    }
}

#[test]
fn overlay_xattrs_from_the_layer() {
    let sandbox = Sandbox::new();
    for name in
        ["trusted.overlay.redirect", "trusted.overlay.opaque", "trusted.overlay.metacopy", "user.overlay.redirect"]
    {
        let layer = Layer::new().pax(&[(&format!("SCHILY.xattr.{name}"), b"/sentinel")]).dir("d", DIR);
        let error = refused(&sandbox, layer);
        assert!(matches!(&error, UnpackError::ReservedXattr { name: refused, .. } if refused == name), "{error}");
    }
}

#[test]
fn odd_entries() {
    let sandbox = Sandbox::new();
    let error = refused(&sandbox, Layer::new().raw(EntryType::Symlink, b".", b"/", b""));
    assert!(matches!(error, UnpackError::RootNotDirectory { .. }), "{error}");
    let error = refused(&sandbox, Layer::new().raw(EntryType::Regular, b"./", b"", b""));
    assert!(matches!(error, UnpackError::RootNotDirectory { .. }), "{error}");
    let error = refused(&sandbox, Layer::new().raw(EntryType::new(b'V'), b"volume", b"", b""));
    assert!(matches!(error, UnpackError::UnsupportedType { kind: 'V', .. }), "{error}");
    let error = refused(&sandbox, Layer::new().pax(&[("path", b"a\0b")]).file("x", b"", FILE));
    assert!(matches!(error, UnpackError::InvalidPath { .. }), "{error}");
}

#[test]
fn corrupt_layers() {
    let sandbox = Sandbox::new();
    let layer = Layer::new().file("a", &[1; 4096], FILE).file("b", &[2; 4096], FILE).tar();

    let mut bad_checksum = layer.clone();
    bad_checksum[0] = b'z';
    let error = sandbox.unpack(&bad_checksum).unwrap_err();
    assert!(matches!(error, UnpackError::Corrupt { .. }), "{error}");

    let error = sandbox.unpack(&layer[..512 + 1000]).unwrap_err();
    assert!(matches!(error, UnpackError::Corrupt { .. }), "{error}");

    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(&layer).unwrap();
    let gzip = encoder.finish().unwrap();
    let zstd = zstd::encode_all(&layer[..], 3).unwrap();
    let cuts = [
        (Compression::Gzip, &gzip[..gzip.len() / 2]),
        (Compression::Gzip, &gzip[..gzip.len() - 4]),
        (Compression::Zstd, &zstd[..zstd.len() / 2]),
        (Compression::Zstd, &zstd[..zstd.len() - 2]),
    ];
    for (compression, cut) in cuts {
        let error = unpack(cut, compression, &sandbox.dest, &Limits::default()).unwrap_err();
        assert!(matches!(error, UnpackError::Corrupt { .. }), "{compression:?} cut to {} bytes: {error}", cut.len());
    }
    sandbox.check_outside();
}

#[test]
fn decompression_bomb_stops_early() {
    let sandbox = Sandbox::new();
    let layer = Layer::new().file("zeros", &vec![0; 8 << 20], FILE).file("after", b"", FILE).tar();
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(&layer).unwrap();
    let bomb = encoder.finish().unwrap();
    let limits = Limits { max_bytes: 1 << 20, ..Limits::default() };
    let error = unpack(&bomb[..], Compression::Gzip, &sandbox.dest, &limits).unwrap_err();
    assert!(
        matches!(&error, UnpackError::Limit { limit: LimitExceeded::Bytes(max), path } if *max == 1 << 20 && path == "zeros"),
        "{error}"
    );
    assert!(meta(&sandbox.path("zeros")).size() <= 1 << 20, "stopped within the limit");
    assert!(!sandbox.path("after").exists());
    sandbox.check_outside();
}

#[test]
fn too_many_entries() {
    let sandbox = Sandbox::new();
    let mut layer = Layer::new();
    for i in 0..50 {
        layer = layer.file(&format!("f{i}"), b"", FILE);
    }
    let limits = Limits { max_entries: 10, ..Limits::default() };
    let error = unpack(&layer.tar()[..], Compression::None, &sandbox.dest, &limits).unwrap_err();
    assert!(matches!(error, UnpackError::Limit { limit: LimitExceeded::Entries(10), .. }), "{error}");
    assert_eq!(fs::read_dir(&sandbox.dest).unwrap().count(), 10);

    // Directories a layer leaves out count too, or one short entry could make thousands.
    let sandbox = Sandbox::new();
    let layer = Layer::new().file("1/a/b/c/f", b"", FILE).file("2/a/b/c/f", b"", FILE).file("3/a/b/c/f", b"", FILE);
    let error = unpack(&layer.tar()[..], Compression::None, &sandbox.dest, &limits).unwrap_err();
    assert!(
        matches!(&error, UnpackError::Limit { limit: LimitExceeded::Entries(10), path } if path == "3/a/b/c/f"),
        "{error}"
    );
    sandbox.check_outside();
}

/// Holes in a sparse entry take no room in the stream, so the byte limit must also cover what
/// is written.
#[test]
fn sparse_bomb() {
    let sandbox = Sandbox::new();
    let layer = Layer::new().sparse("sparse", 64 << 20, 0, b"data").tar();
    let limits = Limits { max_bytes: 8 << 20, ..Limits::default() };
    let error = unpack(&layer[..], Compression::None, &sandbox.dest, &limits).unwrap_err();
    assert!(matches!(error, UnpackError::Limit { limit: LimitExceeded::Bytes(_), .. }), "{error}");
    assert!(meta(&sandbox.path("sparse")).size() <= 8 << 20);
    sandbox.check_outside();
}

/// The tar parser holds PAX records and GNU long names in memory: they get a budget of their own,
/// far below the byte limit.
#[test]
fn oversized_headers() {
    let sandbox = Sandbox::new();
    let huge = vec![b'x'; MAX_HEADER_BYTES as usize + 1];
    let pax = Layer::new().pax(&[("comment", &huge)]).file("f", b"", FILE);
    let error = refused(&sandbox, pax);
    assert!(matches!(error, UnpackError::Limit { limit: LimitExceeded::HeaderBytes(_), .. }), "{error}");
    let long_name = "d/".repeat(MAX_HEADER_BYTES as usize / 2 + 1);
    let error = refused(&sandbox, Layer::new().file("first", b"", FILE).file(&long_name, b"", FILE));
    assert!(
        matches!(&error, UnpackError::Limit { limit: LimitExceeded::HeaderBytes(_), path } if path == "first"),
        "{error}"
    );
}
