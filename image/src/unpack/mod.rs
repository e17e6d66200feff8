//! Unpacking an OCI image layer into a directory that overlayfs can stack.
//!
//! OCI whiteouts become overlayfs ones: a 0:0 character device for a deleted name, the
//! `trusted.overlay.opaque` xattr for an opaque directory. A layer is untrusted input: one
//! whose entries would escape the destination or write through a symlink, or that exceeds its
//! [`Limits`], is refused with an error, and nothing outside the destination is ever touched.

mod compression;
mod error;
mod fs;
mod meta;
mod meter;
mod path;
mod tree;
mod whiteout;

#[cfg(test)]
mod tests;

use std::io::{self, Read};
use std::path::Path;

pub use compression::Compression;
pub use error::{LimitExceeded, UnpackError};

use crate::digest::Digest;
use meter::{Meter, Metered};
use tree::Tree;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Uncompressed tar bytes, headers and padding included; and file content written.
    pub max_bytes: u64,
    /// Tar entries, plus the directories entries need that the layer leaves out.
    pub max_entries: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { max_bytes: 64 << 30, max_entries: 4_000_000 }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unpacked {
    /// File content written.
    pub bytes: u64,
    /// Files, directories, links, devices and whiteouts created; hard links make none.
    pub inodes: u64,
    /// The sha256 of the uncompressed tar stream, which the image config lists for each layer.
    pub diff_id: Digest,
}

/// Unpacks `layer`, compressed as `compression` says, into `dest`, an existing empty directory.
///
/// Blocking: run it on a blocking thread. On error `dest` holds part of the layer; the caller
/// unpacks into a directory of its own and removes it.
pub fn unpack(
    layer: impl Read,
    compression: Compression,
    dest: &Path,
    limits: &Limits,
) -> Result<Unpacked, UnpackError> {
    let mut tree = Tree::open(dest, limits.max_bytes)?;
    let meter = Meter::new(limits.max_bytes);
    let decoder = compression.decoder(layer).map_err(|e| meter.read_error("", e))?;
    let mut archive = tar::Archive::new(Metered::new(decoder, &meter));
    let mut path = String::new();
    let mut entries = archive.entries().map_err(|e| meter.read_error(&path, e))?;
    let mut count = 0u64;
    loop {
        meter.begin_headers();
        let next = entries.next();
        meter.end_headers();
        let mut entry = match next {
            None => break,
            Some(entry) => entry.map_err(|e| meter.read_error(&path, e))?,
        };
        path = path::lossy(&entry.path_bytes());
        count += 1;
        if count + tree.implied_dirs() > limits.max_entries {
            return Err(UnpackError::Limit { path, limit: LimitExceeded::Entries(limits.max_entries) });
        }
        tree.add(&mut entry, &path, &meter)?;
        // The parser would skip what the entry left unread, but within the next header budget.
        io::copy(&mut entry, &mut io::sink()).map_err(|e| meter.read_error(&path, e))?;
    }
    // Reading to the end checks the compressed stream's own integrity (gzip's CRC, zstd's frame
    // checksum), so a truncated or damaged blob fails rather than passing for a whole layer; and
    // the diff ID covers the whole stream.
    let mut stream = archive.into_inner();
    io::copy(&mut stream, &mut io::sink()).map_err(|e| meter.read_error(&path, e))?;
    tree.finish(stream.into_digest())
}
