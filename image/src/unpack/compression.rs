//! How a layer blob is compressed, and the decoder that turns it back into a tar stream.

use std::io::{self, BufReader, Read};

/// Buffer for uncompressed layers, so the tar parser's 512-byte header reads don't each become a
/// read on the caller's stream.
const PLAIN_BUFFER: usize = 128 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

impl Compression {
    /// The compression an OCI or Docker layer media type declares; `None` for any other type.
    pub fn from_media_type(media_type: &str) -> Option<Compression> {
        if let Some(docker) = media_type.strip_prefix("application/vnd.docker.image.rootfs.") {
            return match docker {
                "diff.tar" => Some(Compression::None),
                "diff.tar.gzip" | "foreign.diff.tar.gzip" => Some(Compression::Gzip),
                _ => None,
            };
        }
        let oci = media_type.strip_prefix("application/vnd.oci.image.layer.")?;
        let (base, compression) = match oci.split_once('+') {
            None => (oci, Compression::None),
            Some((base, "gzip")) => (base, Compression::Gzip),
            Some((base, "zstd")) => (base, Compression::Zstd),
            Some(_) => return None,
        };
        matches!(base, "v1.tar" | "nondistributable.v1.tar").then_some(compression)
    }

    /// Recognises gzip and zstd by their magic numbers; anything else is taken to be a plain tar.
    pub fn sniff(first_bytes: &[u8]) -> Compression {
        match first_bytes {
            [0x1f, 0x8b, ..] => Compression::Gzip,
            [0x28, 0xb5, 0x2f, 0xfd, ..] => Compression::Zstd,
            // A zstd stream may open with a skippable frame (magic 0x184D2A50..=0x184D2A5F).
            [low, 0x2a, 0x4d, 0x18, ..] if low & 0xf0 == 0x50 => Compression::Zstd,
            _ => Compression::None,
        }
    }

    pub(super) fn decoder<'a>(self, layer: impl Read + 'a) -> io::Result<Box<dyn Read + 'a>> {
        Ok(match self {
            Compression::None => Box::new(BufReader::with_capacity(PLAIN_BUFFER, layer)),
            // Multi-member, because parallel compressors (pigz) emit concatenated gzip members.
            Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(layer)),
            Compression::Zstd => Box::new(zstd::stream::read::Decoder::new(layer)?),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn media_types() {
        let cases = [
            ("application/vnd.oci.image.layer.v1.tar", Some(Compression::None)),
            ("application/vnd.oci.image.layer.v1.tar+gzip", Some(Compression::Gzip)),
            ("application/vnd.oci.image.layer.v1.tar+zstd", Some(Compression::Zstd)),
            ("application/vnd.oci.image.layer.nondistributable.v1.tar+gzip", Some(Compression::Gzip)),
            ("application/vnd.docker.image.rootfs.diff.tar.gzip", Some(Compression::Gzip)),
            ("application/vnd.docker.image.rootfs.foreign.diff.tar.gzip", Some(Compression::Gzip)),
            ("application/vnd.docker.image.rootfs.diff.tar", Some(Compression::None)),
            ("application/vnd.oci.image.layer.v1.tar+bzip2", None),
            ("application/vnd.oci.image.config.v1+json", None),
            ("application/vnd.docker.container.image.v1+json", None),
            ("application/vnd.oci.image.layer.v1.tar+gzip+zstd", None),
        ];
        for (media_type, want) in cases {
            assert_eq!(Compression::from_media_type(media_type), want, "{media_type}");
        }
    }

    #[test]
    fn sniffing() {
        assert_eq!(Compression::sniff(&[0x1f, 0x8b, 0x08, 0]), Compression::Gzip);
        assert_eq!(Compression::sniff(&[0x28, 0xb5, 0x2f, 0xfd, 0x04]), Compression::Zstd);
        assert_eq!(Compression::sniff(&[0x5e, 0x2a, 0x4d, 0x18, 0]), Compression::Zstd);
        assert_eq!(Compression::sniff(b"etc/passwd\0"), Compression::None);
        assert_eq!(Compression::sniff(&[0x1f]), Compression::None);
        assert_eq!(Compression::sniff(&[]), Compression::None);
    }
}
