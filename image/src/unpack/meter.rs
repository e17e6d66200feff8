//! Counting the uncompressed tar stream as it is read, so a decompression bomb stops early, and
//! digesting it, which gives the layer's diff ID.

use std::cell::Cell;
use std::io::{self, Read};

use sha2::{Digest as _, Sha256};

use super::error::{LimitExceeded, UnpackError};
use crate::digest::Digest;

/// The tar parser reads an entry's PAX records and GNU long names whole into memory before it
/// hands the entry over, so without a budget of its own a hostile layer could make it allocate up
/// to the whole byte limit. Go's archive/tar caps these at 1 MiB as well.
pub(super) const MAX_HEADER_BYTES: u64 = 1024 * 1024;

/// Shared by the reader the tar parser owns and the loop that drives the parser.
pub(super) struct Meter {
    max_bytes: u64,
    read: Cell<u64>,
    /// What is left of the header budget while the parser assembles the next entry, else `None`.
    header_left: Cell<Option<u64>>,
    exceeded: Cell<Option<LimitExceeded>>,
}

impl Meter {
    pub(super) fn new(max_bytes: u64) -> Meter {
        Meter { max_bytes, read: Cell::new(0), header_left: Cell::new(None), exceeded: Cell::new(None) }
    }

    /// Everything read until `end_headers` belongs to the next entry's headers: the caller has
    /// already read the previous entry's data to its end, so only padding precedes them.
    pub(super) fn begin_headers(&self) {
        self.header_left.set(Some(MAX_HEADER_BYTES));
    }

    pub(super) fn end_headers(&self) {
        self.header_left.set(None);
    }

    /// What a failed read of the tar stream means: a limit reached, or a corrupt layer.
    pub(super) fn read_error(&self, path: &str, source: io::Error) -> UnpackError {
        let path = path.to_owned();
        match self.exceeded.get() {
            Some(limit) => UnpackError::Limit { path, limit },
            None => UnpackError::Corrupt { path, source },
        }
    }

    fn count(&self, n: usize) -> io::Result<()> {
        let n = n as u64;
        let read = self.read.get().saturating_add(n);
        self.read.set(read);
        if read > self.max_bytes {
            return Err(self.exceed(LimitExceeded::Bytes(self.max_bytes)));
        }
        if let Some(left) = self.header_left.get() {
            let left = left.checked_sub(n).ok_or_else(|| self.exceed(LimitExceeded::HeaderBytes(MAX_HEADER_BYTES)))?;
            self.header_left.set(Some(left));
        }
        Ok(())
    }

    fn exceed(&self, limit: LimitExceeded) -> io::Error {
        self.exceeded.set(Some(limit));
        io::Error::other(limit.to_string())
    }
}

pub(super) struct Metered<'m, R> {
    inner: R,
    meter: &'m Meter,
    digest: Sha256,
}

impl<'m, R: Read> Metered<'m, R> {
    pub(super) fn new(inner: R, meter: &'m Meter) -> Self {
        Metered { inner, meter, digest: Sha256::new() }
    }

    /// The digest of everything read so far: the diff ID, once read to the end.
    pub(super) fn into_digest(self) -> Digest {
        Digest::from_hasher(self.digest)
    }
}

impl<R: Read> Read for Metered<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.meter.count(n)?;
        self.digest.update(&buf[..n]);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_what_it_reads() {
        let meter = Meter::new(u64::MAX);
        let mut reader = Metered::new(&b"hello"[..], &meter);
        io::copy(&mut reader, &mut io::sink()).unwrap();
        assert_eq!(reader.into_digest(), Digest::of(b"hello"));
    }

    #[test]
    fn stops_at_the_byte_limit() {
        let meter = Meter::new(10);
        let mut reader = Metered::new(&[7u8; 64][..], &meter);
        let mut buf = [0u8; 8];
        reader.read_exact(&mut buf).unwrap();
        assert!(reader.read_exact(&mut buf).is_err());
        assert_eq!(meter.exceeded.get(), Some(LimitExceeded::Bytes(10)));
    }

    #[test]
    fn header_budget_applies_only_between_entries() {
        let data = vec![0u8; 3 * MAX_HEADER_BYTES as usize];
        let meter = Meter::new(u64::MAX);
        let mut reader = Metered::new(&data[..], &meter);
        let mut chunk = vec![0u8; MAX_HEADER_BYTES as usize];
        reader.read_exact(&mut chunk).unwrap();
        meter.begin_headers();
        reader.read_exact(&mut chunk).unwrap();
        assert!(reader.read_exact(&mut chunk[..1]).is_err());
        assert_eq!(meter.exceeded.get(), Some(LimitExceeded::HeaderBytes(MAX_HEADER_BYTES)));
    }
}
