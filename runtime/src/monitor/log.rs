//! The CRI log format the kubelet reads back (`crictl logs`, `kubectl logs`): one record per
//! line, `<RFC3339Nano UTC> <stdout|stderr> <P|F> <text>\n`, where a line longer than
//! [`MAX_LINE`] is written as `P` (partial) records of that size and an `F` record with its
//! rest, as containerd does.

use std::fmt::Write as _;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

/// containerd's default `max_container_log_line_size`.
pub(crate) const MAX_LINE: usize = 16 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stream {
    Stdout,
    Stderr,
}

impl Stream {
    fn name(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Tag {
    Partial,
    Full,
}

/// Cuts one stream's bytes into log records. It holds at most [`MAX_LINE`] bytes of an
/// unfinished line: a line that grows beyond that is given out as a `P` record first.
#[derive(Debug, Default)]
pub(crate) struct LineSplitter {
    partial: Vec<u8>,
}

impl LineSplitter {
    pub(crate) fn feed(&mut self, mut data: &[u8], mut emit: impl FnMut(Tag, &[u8])) {
        while !data.is_empty() {
            match data.iter().position(|&b| b == b'\n') {
                Some(end) => {
                    self.push(&data[..end], &mut emit);
                    // A tty ends its lines with \r\n: the \r is not text.
                    let line = self.partial.strip_suffix(b"\r").unwrap_or(&self.partial);
                    emit(Tag::Full, line);
                    self.partial.clear();
                    data = &data[end + 1..];
                }
                None => {
                    self.push(data, &mut emit);
                    data = &[];
                }
            }
        }
    }

    /// The stream ended: an unfinished line is still a whole record.
    pub(crate) fn finish(&mut self, mut emit: impl FnMut(Tag, &[u8])) {
        if !self.partial.is_empty() {
            emit(Tag::Full, &self.partial);
            self.partial = Vec::new();
        }
    }

    /// Adds text without a newline. A full buffer is given out only when more text follows,
    /// so that a line of exactly `MAX_LINE` bytes stays one `F` record.
    fn push(&mut self, mut text: &[u8], emit: &mut impl FnMut(Tag, &[u8])) {
        loop {
            let room = MAX_LINE - self.partial.len();
            if text.len() <= room {
                self.partial.extend_from_slice(text);
                return;
            }
            self.partial.extend_from_slice(&text[..room]);
            emit(Tag::Partial, &self.partial);
            self.partial.clear();
            text = &text[room..];
        }
    }
}

/// Opens (creating) a container's log for appending; readers outside root's group get nothing.
pub(crate) fn open(path: &Path) -> io::Result<File> {
    // A symlink planted where the log goes (at creation or after a rotation) would send the
    // container's output to a file of the host's choosing.
    OpenOptions::new().create(true).append(true).mode(0o640).custom_flags(libc::O_NOFOLLOW).open(path)
}

/// Appends one record with a single write, so that a reader (or a rotation) never sees half
/// a record from us.
pub(crate) fn write_record(
    file: &mut File,
    line: &mut Vec<u8>,
    stamp: &str,
    stream: Stream,
    tag: Tag,
    text: &[u8],
) -> io::Result<()> {
    line.clear();
    line.extend_from_slice(stamp.as_bytes());
    line.push(b' ');
    line.extend_from_slice(stream.name().as_bytes());
    line.extend_from_slice(if tag == Tag::Partial { b" P " } else { b" F " });
    line.extend_from_slice(text);
    line.push(b'\n');
    file.write_all(line)
}

/// Now as RFC 3339 in UTC with nanoseconds, always 9 digits (`2026-11-23T19:01:24.652997376Z`):
/// Go's `time.RFC3339Nano` parses it, and records sort as text.
pub(crate) fn timestamp(now: SystemTime) -> String {
    let since = now.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let (days, rest) = (secs / 86_400, secs % 86_400);
    let (year, month, day) = civil_from_days(days as i64);
    let mut out = String::with_capacity(30);
    let _ = write!(
        out,
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:09}Z",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60,
        since.subsec_nanos()
    );
    out
}

/// Howard Hinnant's `civil_from_days`: the proleptic Gregorian date `days` after 1970-01-01.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn a_log_that_is_a_symlink_is_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("elsewhere");
        std::fs::write(&target, b"keep").unwrap();
        std::os::unix::fs::symlink(&target, dir.path().join("c.log")).unwrap();
        let error = open(&dir.path().join("c.log")).unwrap_err();
        assert_eq!(error.raw_os_error(), Some(libc::ELOOP), "{error}");
        assert_eq!(std::fs::read(&target).unwrap(), b"keep");
        assert!(open(&dir.path().join("d.log")).is_ok());
    }

    fn split(chunks: &[&[u8]], finish: bool) -> Vec<(Tag, Vec<u8>)> {
        let mut splitter = LineSplitter::default();
        let mut out = Vec::new();
        for chunk in chunks {
            splitter.feed(chunk, |tag, text| out.push((tag, text.to_vec())));
        }
        if finish {
            splitter.finish(|tag, text| out.push((tag, text.to_vec())));
        }
        out
    }

    #[test]
    fn lines_across_chunks_become_full_records() {
        let out = split(&[b"one\ntw", b"o\r\n\nthree"], false);
        assert_eq!(out, [(Tag::Full, b"one".to_vec()), (Tag::Full, b"two".to_vec()), (Tag::Full, vec![])]);
        let out = split(&[b"one\ntw", b"o\r\n\nthree"], true);
        assert_eq!(out.last().unwrap(), &(Tag::Full, b"three".to_vec()));
        assert!(split(&[b"a\n"], true).len() == 1, "nothing more at the end of a finished line");
    }

    #[test]
    fn long_lines_are_split_into_partial_records() {
        let line = vec![b'x'; 40 * 1024];
        // Fed in odd chunk sizes, as pipes deliver.
        let mut chunks: Vec<&[u8]> = line.chunks(5000).collect();
        chunks.push(b"\nnext\n");
        let out = split(&chunks, true);
        let shape: Vec<(Tag, usize)> = out.iter().map(|(t, text)| (*t, text.len())).collect();
        assert_eq!(
            shape,
            [(Tag::Partial, MAX_LINE), (Tag::Partial, MAX_LINE), (Tag::Full, 40 * 1024 - 2 * MAX_LINE), (Tag::Full, 4)]
        );
        // Exactly the limit is one full record; one byte more is a partial and a full one.
        let exact = [vec![b'y'; MAX_LINE], b"\n".to_vec()].concat();
        assert_eq!(split(&[&exact], true), [(Tag::Full, vec![b'y'; MAX_LINE])]);
        let over = [vec![b'y'; MAX_LINE + 1], b"\n".to_vec()].concat();
        assert_eq!(split(&[&over], true), [(Tag::Partial, vec![b'y'; MAX_LINE]), (Tag::Full, b"y".to_vec())]);
    }

    #[test]
    fn records_have_the_cri_shape() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("0.log");
        let mut file = open(&path).unwrap();
        let mut line = Vec::new();
        write_record(&mut file, &mut line, "T", Stream::Stderr, Tag::Partial, b"ab").unwrap();
        write_record(&mut file, &mut line, "T", Stream::Stdout, Tag::Full, b"").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "T stderr P ab\nT stdout F \n");
    }

    #[test]
    fn timestamps_are_rfc3339_nano_in_utc() {
        assert_eq!(timestamp(UNIX_EPOCH), "1970-01-01T00:00:00.000000000Z");
        let t = UNIX_EPOCH + Duration::new(1_795_460_484, 652_997_376);
        assert_eq!(timestamp(t), "2026-11-23T19:01:24.652997376Z");
        // A leap day and the end of a leap year.
        assert_eq!(timestamp(UNIX_EPOCH + Duration::from_secs(951_782_400)), "2000-02-29T00:00:00.000000000Z");
        assert_eq!(timestamp(UNIX_EPOCH + Duration::from_secs(1_735_689_599)), "2024-12-31T23:59:59.000000000Z");
    }
}
