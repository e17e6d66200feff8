//! Frames on a monitor connection once an `attach` or `exec_stream` request was answered: the
//! connection then carries a process's stdio both ways until the monitor sends `Exit` (or
//! `Error`) and closes it.
//!
//! A frame is `[kind: u8][length: u32 big-endian][payload]`. From the client: `Stdin` (bytes),
//! `CloseStdin`, `Resize` (width, height: u16 big-endian each). From the monitor: `Stdout`,
//! `Stderr` (bytes), `Exit` (the exit code, i32 big-endian), `Error` (a message: the process
//! could not be run).

/// No frame is longer: the monitor reads at most 32 KiB at a time, and clients are held to it.
pub const MAX_PAYLOAD: usize = 64 * 1024;
const HEADER: usize = 5;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    Stdin(Vec<u8>),
    Stdout(Vec<u8>),
    Stderr(Vec<u8>),
    CloseStdin,
    Resize { width: u16, height: u16 },
    Exit(i32),
    Error(String),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("unknown frame kind {0}")]
    Kind(u8),
    #[error("frame of {0} bytes is longer than {MAX_PAYLOAD}")]
    TooLong(usize),
    #[error("{kind} frame with a payload of {len} bytes")]
    BadPayload { kind: &'static str, len: usize },
}

impl Frame {
    fn kind(&self) -> u8 {
        match self {
            Frame::Stdin(_) => 0,
            Frame::Stdout(_) => 1,
            Frame::Stderr(_) => 2,
            Frame::CloseStdin => 3,
            Frame::Resize { .. } => 4,
            Frame::Exit(_) => 5,
            Frame::Error(_) => 6,
        }
    }

    /// Appends the frame to `out`. Data frames longer than [`MAX_PAYLOAD`] must be split by
    /// the caller ([`Frame::data`] does).
    pub fn encode(&self, out: &mut Vec<u8>) {
        let start = out.len();
        out.push(self.kind());
        out.extend_from_slice(&[0; 4]);
        match self {
            Frame::Stdin(data) | Frame::Stdout(data) | Frame::Stderr(data) => out.extend_from_slice(data),
            Frame::CloseStdin => {}
            Frame::Resize { width, height } => {
                out.extend_from_slice(&width.to_be_bytes());
                out.extend_from_slice(&height.to_be_bytes());
            }
            Frame::Exit(code) => out.extend_from_slice(&code.to_be_bytes()),
            Frame::Error(message) => {
                let mut end = message.len().min(MAX_PAYLOAD);
                while !message.is_char_boundary(end) {
                    end -= 1;
                }
                out.extend_from_slice(&message.as_bytes()[..end]);
            }
        }
        let len = (out.len() - start - HEADER) as u32;
        out[start + 1..start + HEADER].copy_from_slice(&len.to_be_bytes());
    }

    /// Appends `data` as frames of `make` no longer than [`MAX_PAYLOAD`].
    pub fn data(data: &[u8], make: fn(Vec<u8>) -> Frame, out: &mut Vec<u8>) {
        for piece in data.chunks(MAX_PAYLOAD) {
            make(piece.to_vec()).encode(out);
        }
    }

    /// The first frame in `buf` and how many bytes it took; `None` while it is incomplete.
    pub fn decode(buf: &[u8]) -> Result<Option<(Frame, usize)>, FrameError> {
        let Some(header) = buf.get(..HEADER) else { return Ok(None) };
        let len = u32::from_be_bytes(header[1..].try_into().expect("4 bytes")) as usize;
        if len > MAX_PAYLOAD {
            return Err(FrameError::TooLong(len));
        }
        let Some(payload) = buf.get(HEADER..HEADER + len) else { return Ok(None) };
        let bad = |kind| FrameError::BadPayload { kind, len };
        let frame = match header[0] {
            0 => Frame::Stdin(payload.to_vec()),
            1 => Frame::Stdout(payload.to_vec()),
            2 => Frame::Stderr(payload.to_vec()),
            3 if len == 0 => Frame::CloseStdin,
            3 => return Err(bad("close-stdin")),
            4 => {
                let [w0, w1, h0, h1] = payload.try_into().map_err(|_| bad("resize"))?;
                Frame::Resize { width: u16::from_be_bytes([w0, w1]), height: u16::from_be_bytes([h0, h1]) }
            }
            5 => Frame::Exit(i32::from_be_bytes(payload.try_into().map_err(|_| bad("exit"))?)),
            6 => Frame::Error(String::from_utf8_lossy(payload).into_owned()),
            kind => return Err(FrameError::Kind(kind)),
        };
        Ok(Some((frame, HEADER + len)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_and_wait_for_their_end() {
        let frames = [
            Frame::Stdin(b"ls\n".to_vec()),
            Frame::Stdout(Vec::new()),
            Frame::Stderr(vec![0xff; 10]),
            Frame::CloseStdin,
            Frame::Resize { width: 120, height: 40 },
            Frame::Exit(-1),
            Frame::Error("no such file".into()),
        ];
        let mut buf = Vec::new();
        for frame in &frames {
            frame.encode(&mut buf);
        }
        assert_eq!(&buf[..8], &[0, 0, 0, 0, 3, b'l', b's', b'\n']);
        let mut decoded = Vec::new();
        let mut rest = &buf[..];
        while let Some((frame, used)) = Frame::decode(rest).unwrap() {
            decoded.push(frame);
            rest = &rest[used..];
        }
        assert!(rest.is_empty());
        assert_eq!(decoded, frames);
        assert_eq!(Frame::decode(&buf[..4]).unwrap(), None);
        assert_eq!(Frame::decode(&buf[..7]).unwrap(), None);
    }

    #[test]
    fn bad_frames_are_refused() {
        assert_eq!(Frame::decode(&[9, 0, 0, 0, 0]), Err(FrameError::Kind(9)));
        assert_eq!(Frame::decode(&[0, 0, 2, 0, 0]), Err(FrameError::TooLong(0x20000)));
        assert!(matches!(Frame::decode(&[4, 0, 0, 0, 1, 7]), Err(FrameError::BadPayload { .. })));
        let mut big = Vec::new();
        Frame::data(&vec![1; MAX_PAYLOAD + 1], Frame::Stdout, &mut big);
        let (first, used) = Frame::decode(&big).unwrap().unwrap();
        assert_eq!(first, Frame::Stdout(vec![1; MAX_PAYLOAD]));
        assert_eq!(Frame::decode(&big[used..]).unwrap().unwrap().0, Frame::Stdout(vec![1]));
    }
}
