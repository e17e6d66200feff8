use std::io::Write;
use std::path::Path;

use flate2::Compression;
use flate2::write::GzEncoder;
use oci_client::manifest::{IMAGE_LAYER_GZIP_MEDIA_TYPE, IMAGE_LAYER_MEDIA_TYPE};
use tar::{EntryType, Header};

use crate::lab::digest::Digest;
use crate::lab::error::LabError;

/// A built layer: the gzip blob the registry stores and the digests that name it.
#[derive(Clone, Debug)]
pub struct Layer {
    blob: Vec<u8>,
    digest: Digest,
    diff_id: Digest,
    media_type: &'static str,
}

impl Layer {
    /// The gzip-compressed tar, as pushed.
    pub fn blob(&self) -> &[u8] {
        &self.blob
    }

    /// The digest of the compressed blob: what the manifest references.
    pub fn digest(&self) -> &Digest {
        &self.digest
    }

    /// The digest of the uncompressed tar: what the config's rootfs lists.
    pub fn diff_id(&self) -> &Digest {
        &self.diff_id
    }

    pub fn media_type(&self) -> &'static str {
        self.media_type
    }
}

/// Writes a layer's tar in memory, entry by entry. Paths are given as the container sees them
/// (`/bin/sh`); the archive stores them relative, as layer tars do.
///
/// Every entry is owned by root and dated at the epoch so that a layer built twice from the same
/// inputs has the same digest: a long-running lab restarted with its old storage then pushes
/// nothing new, and tests can compare digests across builds.
pub struct LayerBuilder {
    tar: tar::Builder<Vec<u8>>,
    /// The modes of the regular files written so far, by path: what their hard links carry.
    modes: std::collections::HashMap<String, u32>,
}

impl Default for LayerBuilder {
    fn default() -> Self {
        Self { tar: tar::Builder::new(Vec::new()), modes: Default::default() }
    }
}

impl LayerBuilder {
    pub fn dir(&mut self, path: &str, mode: u32) -> Result<&mut Self, LabError> {
        let mut header = header(EntryType::Directory, mode, 0);
        self.tar.append_data(&mut header, relative(path), std::io::empty()).map_err(LabError::Layer)?;
        Ok(self)
    }

    pub fn file(&mut self, path: &str, mode: u32, contents: &[u8]) -> Result<&mut Self, LabError> {
        let mut header = header(EntryType::Regular, mode, contents.len() as u64);
        self.tar.append_data(&mut header, relative(path), contents).map_err(LabError::Layer)?;
        self.modes.insert(path.to_owned(), mode);
        Ok(self)
    }

    /// A hard link entry: `path` shares `target`'s inode once unpacked. `target` must be an
    /// earlier entry of this layer. The entry carries the target's mode, as docker's and Go's
    /// tar writers make it: unpackers that apply a link entry's mode to the shared inode
    /// (containerd 1.6) would otherwise leave the target with mode 0.
    pub fn hard_link(&mut self, path: &str, target: &str) -> Result<&mut Self, LabError> {
        let mode = self.modes.get(target).copied().unwrap_or(0o644);
        let mut header = header(EntryType::Link, mode, 0);
        self.tar.append_link(&mut header, relative(path), relative(target)).map_err(LabError::Layer)?;
        Ok(self)
    }

    /// An OCI whiteout: unpacking this layer deletes `path` as lower layers left it.
    pub fn whiteout(&mut self, path: &str) -> Result<&mut Self, LabError> {
        let path = Path::new(path);
        let name =
            path.file_name().ok_or_else(|| LabError::Layer(std::io::Error::other("a whiteout needs a file name")))?;
        let marker = path.with_file_name(format!(".wh.{}", name.to_string_lossy())).to_string_lossy().into_owned();
        self.file(&marker, 0o644, &[])
    }

    /// An entry written as given, bypassing the path checks of the tar writer: how tests make
    /// hostile layers (`../x`, absolute paths, links out of the root).
    pub fn raw(
        &mut self,
        name: &[u8],
        kind: EntryType,
        link: Option<&[u8]>,
        contents: &[u8],
    ) -> Result<&mut Self, LabError> {
        let too_long = || LabError::Layer(std::io::Error::other("raw tar names are at most 100 bytes"));
        let mut header = header(kind, 0o644, contents.len() as u64);
        let old = header.as_old_mut();
        old.name.get_mut(..name.len()).ok_or_else(too_long)?.copy_from_slice(name);
        if let Some(link) = link {
            old.linkname.get_mut(..link.len()).ok_or_else(too_long)?.copy_from_slice(link);
        }
        header.set_cksum();
        self.tar.append(&header, contents).map_err(LabError::Layer)?;
        Ok(self)
    }

    pub fn finish(self) -> Result<Layer, LabError> {
        let tar = self.tar.into_inner().map_err(LabError::Layer)?;
        let mut gzip = GzEncoder::new(Vec::new(), Compression::default());
        gzip.write_all(&tar).map_err(LabError::Layer)?;
        let blob = gzip.finish().map_err(LabError::Layer)?;
        Ok(Layer {
            digest: Digest::of(&blob),
            diff_id: Digest::of(&tar),
            blob,
            media_type: IMAGE_LAYER_GZIP_MEDIA_TYPE,
        })
    }

    /// The layer as a plain tar: its blob digest is its diff ID.
    pub fn finish_uncompressed(self) -> Result<Layer, LabError> {
        let tar = self.tar.into_inner().map_err(LabError::Layer)?;
        let digest = Digest::of(&tar);
        Ok(Layer { digest: digest.clone(), diff_id: digest, blob: tar, media_type: IMAGE_LAYER_MEDIA_TYPE })
    }
}

fn relative(path: &str) -> &str {
    path.trim_start_matches('/')
}

fn header(kind: EntryType, mode: u32, size: u64) -> Header {
    let mut header = Header::new_gnu();
    header.set_entry_type(kind);
    header.set_mode(mode);
    header.set_size(size);
    header.set_uid(0);
    header.set_gid(0);
    header.set_mtime(0);
    header
}
