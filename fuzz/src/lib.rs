//! The fuzz targets' bodies, one function per target: each takes the fuzzer's bytes, feeds them
//! to one of crisp's parsers of untrusted input and panics if the parser panics or breaks an
//! invariant of its own. `fuzz_targets/*.rs` hand them to libFuzzer (nightly, `cargo fuzz`);
//! `cri/tests/fuzz.rs` runs them on stable over the corpus and seeded mutations of it.

use std::fs;
use std::io::Write as _;
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};

use bytes::{Bytes, BytesMut};
use crisp_cri::streaming::spdy::{Frame, HeaderDecompressor};
use crisp_cri::streaming::websocket::{self, ChannelMessage, Protocol};
use crisp_image::Reference;
use crisp_image::unpack::{Compression, Limits};
use crisp_network::cni::SpecVersion;

pub type Target = fn(&[u8]);

/// Every target, by the name of its corpus directory and its `fuzz_targets/` file.
pub const TARGETS: &[(&str, Target)] = &[
    ("reference", reference),
    ("manifest", manifest),
    ("image_config", image_config),
    ("unpack", unpack),
    ("cni_result", cni_result),
    ("spdy_frame", spdy_frame),
    ("spdy_client", spdy_client),
    ("websocket_channel", websocket_channel),
    ("config", config),
];

/// A reference that parses prints as one that parses to the same value.
pub fn reference(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(parsed) = Reference::parse(text) else { return };
    let printed = parsed.to_string();
    assert_eq!(Reference::parse(&printed).as_ref(), Ok(&parsed), "{text:?} printed as {printed:?}");
}

pub fn manifest(data: &[u8]) {
    let _ = crisp_image::pull::parse_manifest(data);
}

pub fn image_config(data: &[u8]) {
    let _ = crisp_image::pull::parse_config(data);
}

/// Unpacks a layer (plain, gzip or zstd as its magic says) into a root that has a sentinel
/// directory beside it: whether the layer is accepted or refused, nothing may appear outside the
/// root and the sentinel's file must keep its content and its single link.
pub fn unpack(data: &[u8]) {
    let base = tempfile::tempdir().expect("a temp dir");
    let sentinel = base.path().join("sentinel");
    let root = base.path().join("wrap/root");
    fs::create_dir_all(&sentinel).unwrap();
    fs::create_dir_all(&root).unwrap();
    let witness = sentinel.join("file");
    fs::File::create(&witness).unwrap().write_all(b"untouched").unwrap();
    let limits = Limits { max_bytes: 4 << 20, max_entries: 1000 };
    let _ = crisp_image::unpack::unpack(data, Compression::sniff(data), &root, &limits);
    let mut outside = Vec::new();
    for path in walk(base.path()) {
        let expected = [&sentinel, &witness, &base.path().join("wrap"), &root];
        if !path.starts_with(&root) && !expected.contains(&&path) {
            outside.push(path);
        }
    }
    assert!(outside.is_empty(), "the layer created {outside:?} outside the root");
    let meta = fs::symlink_metadata(&witness).expect("the sentinel file is still there");
    assert!(meta.is_file() && meta.nlink() == 1, "the sentinel file was replaced or linked: {meta:?}");
    assert_eq!(fs::read(&witness).unwrap(), b"untouched", "the sentinel file was written");
}

/// Every path under `dir`, not following symlinks.
fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_owned()];
    while let Some(dir) = pending.pop() {
        let Ok(entries) = fs::read_dir(&dir) else { continue };
        for entry in entries.flatten() {
            let path = entry.path();
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                pending.push(path.clone());
            }
            found.push(path);
        }
    }
    found
}

/// A result accepted for a version is in that version's format and reads back unchanged.
pub fn cni_result(data: &[u8]) {
    for text in ["0.3.1", "0.4.0", "1.0.0", "1.1.0"] {
        let version = SpecVersion::parse(text).unwrap();
        let Ok(result) = crisp_network::cni::parse_result(data, version) else { continue };
        assert_eq!(result["cniVersion"], text);
        let again = crisp_network::cni::parse_result(result.to_string().as_bytes(), version);
        assert_eq!(again.as_ref(), Ok(&result), "a converted result does not read back");
        let _ = crisp_network::cni::pod_ips(&result);
    }
}

/// The server's codec: frames decode until the input runs out, an incomplete frame consumes
/// nothing, a decoded frame encodes to bytes that decode to the same frame, and header blocks
/// decompress (or fail) in order through one context, as on a connection.
pub fn spdy_frame(data: &[u8]) {
    const MAX_LEN: usize = 1 << 20;
    let mut buf = BytesMut::from(data);
    let mut headers = Some(HeaderDecompressor::new());
    loop {
        let before = buf.len();
        let frame = match Frame::decode(&mut buf, MAX_LEN) {
            Ok(Some(frame)) => frame,
            Ok(None) => {
                assert_eq!(buf.len(), before, "an incomplete frame was consumed");
                return;
            }
            Err(_) => return,
        };
        let mut wire = BytesMut::new();
        frame.encode(&mut wire).expect("a decoded frame encodes");
        let again = Frame::decode(&mut wire, MAX_LEN).expect("an encoded frame decodes");
        assert_eq!(again.as_ref(), Some(&frame), "a frame does not survive encoding");
        assert!(wire.is_empty(), "encoding left {} stray bytes", wire.len());
        let block = match &frame {
            Frame::SynStream { header_block, .. }
            | Frame::SynReply { header_block, .. }
            | Frame::Headers { header_block, .. } => header_block,
            _ => continue,
        };
        // After an error the zlib stream is unusable, as the session knows.
        if let Some(decompressor) = &mut headers {
            if decompressor.decompress(block).is_err() {
                headers = None;
            }
        }
    }
}

/// The conformance client's own frame reader, which must refuse rather than panic.
pub fn spdy_client(data: &[u8]) {
    let _ = crisp_conformance::streaming::spdy::parse_frames(data);
}

/// The first byte picks the subprotocol, the rest is a message: one that decodes to data
/// encodes back to a message that decodes the same.
pub fn websocket_channel(data: &[u8]) {
    let Some((&pick, payload)) = data.split_first() else { return };
    let protocols = [Protocol::Plain, Protocol::Base64, Protocol::V4, Protocol::V4Base64, Protocol::V5];
    let protocol = protocols[usize::from(pick) % protocols.len()];
    let Ok(Some(message)) = websocket::decode(protocol, Bytes::copy_from_slice(payload)) else { return };
    let ChannelMessage::Data { channel, data } = &message else { return };
    // Base64 channels beyond the ASCII digits cannot be sent back, which encode refuses.
    let Ok(encoded) = websocket::encode(protocol, *channel, data) else { return };
    let again = websocket::decode(protocol, encoded.into_data()).expect("an encoded message decodes");
    assert_eq!(again.as_ref(), Some(&message));
}

/// The configuration file, read as the daemon reads `--config`: never a panic, and an error
/// names the file with the key or the line at fault.
pub fn config(data: &[u8]) {
    let dir = tempfile::tempdir().expect("a temp dir");
    let path = dir.path().join("crisp.toml");
    fs::write(&path, data).unwrap();
    let Err(error) = crisp_cri::config::load(&path, true) else { return };
    let message = error.to_string();
    let names_place = match &error {
        crisp_cri::config::ConfigError::Read { .. } => message.contains("crisp.toml"),
        crisp_cri::config::ConfigError::Syntax { .. } => message.contains("crisp.toml") && message.contains("line"),
        crisp_cri::config::ConfigError::Key { key, .. } => message.contains("crisp.toml") && !key.is_empty(),
        crisp_cri::config::ConfigError::Invalid(_) => false,
    };
    assert!(names_place, "the error names neither file, key nor line: {message}");
}
