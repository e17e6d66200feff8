//! SPDY/3 frame codec.
//!
//! Header blocks travel here still compressed: their zlib context spans the whole connection, so
//! only the session (which owns that context) can make sense of them.

use bytes::{Buf, BufMut, Bytes, BytesMut};

/// The largest body the 24-bit length field can describe.
pub const MAX_FRAME_LEN: usize = 0x00FF_FFFF;

/// FIN on DATA, SYN_STREAM, SYN_REPLY and HEADERS: the sender will send nothing more on the stream.
pub const FLAG_FIN: u8 = 0x01;

/// RST_STREAM status codes (SPDY/3 §2.4.2) this crate sends.
pub const RST_PROTOCOL_ERROR: u32 = 1;
pub const RST_CANCEL: u32 = 5;

/// GOAWAY status codes (SPDY/3 §2.6.6).
pub const GOAWAY_OK: u32 = 0;
pub const GOAWAY_PROTOCOL_ERROR: u32 = 1;

const HEADER_LEN: usize = 8;
const CONTROL_BIT: u32 = 0x8000_0000;
const STREAM_ID_MASK: u32 = 0x7FFF_FFFF;
const VERSION: u16 = 3;

const SYN_STREAM: u16 = 1;
const SYN_REPLY: u16 = 2;
const RST_STREAM: u16 = 3;
const SETTINGS: u16 = 4;
const PING: u16 = 6;
const GOAWAY: u16 = 7;
const HEADERS: u16 = 8;
const WINDOW_UPDATE: u16 = 9;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FrameError {
    #[error("frame body of {len} bytes exceeds the limit of {max}")]
    TooLarge { len: usize, max: usize },
    #[error("{kind} frame has invalid length {len}")]
    InvalidLength { kind: &'static str, len: usize },
    #[error("{kind} frame names stream 0")]
    ZeroStreamId { kind: &'static str },
}

/// One SETTINGS entry; the id is 24 bits on the wire, the flags share its word.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Setting {
    pub flags: u8,
    pub id: u32,
    pub value: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    SynStream {
        stream_id: u32,
        associated_to: u32,
        priority: u8,
        slot: u8,
        flags: u8,
        header_block: Bytes,
    },
    SynReply {
        stream_id: u32,
        flags: u8,
        header_block: Bytes,
    },
    RstStream {
        stream_id: u32,
        status: u32,
    },
    Settings {
        flags: u8,
        entries: Vec<Setting>,
    },
    Ping {
        id: u32,
    },
    GoAway {
        last_good_stream_id: u32,
        status: u32,
    },
    Headers {
        stream_id: u32,
        flags: u8,
        header_block: Bytes,
    },
    WindowUpdate {
        stream_id: u32,
        delta: u32,
    },
    Data {
        stream_id: u32,
        fin: bool,
        data: Bytes,
    },
    /// A control frame of a type this codec does not know. Later SPDY drafts and extensions add
    /// types, so its body is skipped rather than treated as a protocol error.
    Unknown {
        frame_type: u16,
    },
}

impl Frame {
    /// Takes one whole frame off the front of `buf`, or returns `None` (consuming nothing) if
    /// `buf` does not hold a whole frame yet. Bodies longer than `max_len` are refused before
    /// they are buffered.
    pub fn decode(buf: &mut BytesMut, max_len: usize) -> Result<Option<Frame>, FrameError> {
        if buf.len() < HEADER_LEN {
            return Ok(None);
        }
        let len = usize::from(buf[5]) << 16 | usize::from(buf[6]) << 8 | usize::from(buf[7]);
        if len > max_len {
            return Err(FrameError::TooLarge { len, max: max_len });
        }
        if buf.len() < HEADER_LEN + len {
            return Ok(None);
        }
        let mut head = buf.split_to(HEADER_LEN);
        let body = buf.split_to(len).freeze();
        let word = head.get_u32();
        let flags = head.get_u8();
        if word & CONTROL_BIT == 0 {
            let stream_id = nonzero(word, "DATA")?;
            return Ok(Some(Frame::Data { stream_id, fin: flags & FLAG_FIN != 0, data: body }));
        }
        // The version half-word is ignored, as Go's framer does: only SPDY/3 is ever negotiated.
        let frame_type = (word & 0xFFFF) as u16;
        decode_control(frame_type, flags, body).map(Some)
    }

    /// Appends the wire form of the frame to `dst`.
    pub fn encode(&self, dst: &mut BytesMut) -> Result<(), FrameError> {
        match self {
            Frame::SynStream { stream_id, associated_to, priority, slot, flags, header_block } => {
                control_header(dst, SYN_STREAM, *flags, 10 + header_block.len())?;
                dst.put_u32(stream_id & STREAM_ID_MASK);
                dst.put_u32(associated_to & STREAM_ID_MASK);
                dst.put_u8(priority << 5);
                dst.put_u8(*slot);
                dst.put_slice(header_block);
            }
            Frame::SynReply { stream_id, flags, header_block } => {
                control_header(dst, SYN_REPLY, *flags, 4 + header_block.len())?;
                dst.put_u32(stream_id & STREAM_ID_MASK);
                dst.put_slice(header_block);
            }
            Frame::RstStream { stream_id, status } => {
                control_header(dst, RST_STREAM, 0, 8)?;
                dst.put_u32(stream_id & STREAM_ID_MASK);
                dst.put_u32(*status);
            }
            Frame::Settings { flags, entries } => {
                control_header(dst, SETTINGS, *flags, 4 + 8 * entries.len())?;
                dst.put_u32(u32::try_from(entries.len()).map_err(|_| too_large(entries.len()))?);
                for entry in entries {
                    dst.put_u32(u32::from(entry.flags) << 24 | entry.id & 0x00FF_FFFF);
                    dst.put_u32(entry.value);
                }
            }
            Frame::Ping { id } => {
                control_header(dst, PING, 0, 4)?;
                dst.put_u32(*id);
            }
            Frame::GoAway { last_good_stream_id, status } => {
                control_header(dst, GOAWAY, 0, 8)?;
                dst.put_u32(last_good_stream_id & STREAM_ID_MASK);
                dst.put_u32(*status);
            }
            Frame::Headers { stream_id, flags, header_block } => {
                control_header(dst, HEADERS, *flags, 4 + header_block.len())?;
                dst.put_u32(stream_id & STREAM_ID_MASK);
                dst.put_slice(header_block);
            }
            Frame::WindowUpdate { stream_id, delta } => {
                control_header(dst, WINDOW_UPDATE, 0, 8)?;
                dst.put_u32(stream_id & STREAM_ID_MASK);
                dst.put_u32(delta & STREAM_ID_MASK);
            }
            Frame::Data { stream_id, fin, data } => {
                check_len(data.len())?;
                dst.put_u32(stream_id & STREAM_ID_MASK);
                dst.put_u8(if *fin { FLAG_FIN } else { 0 });
                put_u24(dst, data.len());
                dst.put_slice(data);
            }
            Frame::Unknown { frame_type } => control_header(dst, *frame_type, 0, 0)?,
        }
        Ok(())
    }
}

fn decode_control(frame_type: u16, flags: u8, mut body: Bytes) -> Result<Frame, FrameError> {
    let len = body.len();
    let frame = match frame_type {
        SYN_STREAM => {
            min_len(len, 10, "SYN_STREAM")?;
            let stream_id = nonzero(body.get_u32(), "SYN_STREAM")?;
            let associated_to = body.get_u32() & STREAM_ID_MASK;
            let priority = body.get_u8() >> 5;
            let slot = body.get_u8();
            Frame::SynStream { stream_id, associated_to, priority, slot, flags, header_block: body }
        }
        SYN_REPLY => {
            min_len(len, 4, "SYN_REPLY")?;
            let stream_id = nonzero(body.get_u32(), "SYN_REPLY")?;
            Frame::SynReply { stream_id, flags, header_block: body }
        }
        RST_STREAM => {
            exact_len(len, 8, "RST_STREAM")?;
            let stream_id = nonzero(body.get_u32(), "RST_STREAM")?;
            Frame::RstStream { stream_id, status: body.get_u32() }
        }
        SETTINGS => {
            min_len(len, 4, "SETTINGS")?;
            let count = body.get_u32() as usize;
            if count.checked_mul(8) != Some(body.len()) {
                return Err(FrameError::InvalidLength { kind: "SETTINGS", len });
            }
            let entries = (0..count)
                .map(|_| {
                    let word = body.get_u32();
                    Setting { flags: (word >> 24) as u8, id: word & 0x00FF_FFFF, value: body.get_u32() }
                })
                .collect();
            Frame::Settings { flags, entries }
        }
        PING => {
            exact_len(len, 4, "PING")?;
            Frame::Ping { id: body.get_u32() }
        }
        GOAWAY => {
            exact_len(len, 8, "GOAWAY")?;
            Frame::GoAway { last_good_stream_id: body.get_u32() & STREAM_ID_MASK, status: body.get_u32() }
        }
        HEADERS => {
            min_len(len, 4, "HEADERS")?;
            let stream_id = nonzero(body.get_u32(), "HEADERS")?;
            Frame::Headers { stream_id, flags, header_block: body }
        }
        WINDOW_UPDATE => {
            exact_len(len, 8, "WINDOW_UPDATE")?;
            let stream_id = body.get_u32() & STREAM_ID_MASK;
            Frame::WindowUpdate { stream_id, delta: body.get_u32() & STREAM_ID_MASK }
        }
        frame_type => Frame::Unknown { frame_type },
    };
    Ok(frame)
}

fn control_header(dst: &mut BytesMut, frame_type: u16, flags: u8, len: usize) -> Result<(), FrameError> {
    check_len(len)?;
    dst.reserve(HEADER_LEN + len);
    dst.put_u16(0x8000 | VERSION);
    dst.put_u16(frame_type);
    dst.put_u8(flags);
    put_u24(dst, len);
    Ok(())
}

fn put_u24(dst: &mut BytesMut, len: usize) {
    dst.put_uint(len as u64, 3);
}

fn check_len(len: usize) -> Result<(), FrameError> {
    if len > MAX_FRAME_LEN { Err(too_large(len)) } else { Ok(()) }
}

fn too_large(len: usize) -> FrameError {
    FrameError::TooLarge { len, max: MAX_FRAME_LEN }
}

fn nonzero(word: u32, kind: &'static str) -> Result<u32, FrameError> {
    match word & STREAM_ID_MASK {
        0 => Err(FrameError::ZeroStreamId { kind }),
        id => Ok(id),
    }
}

fn min_len(len: usize, min: usize, kind: &'static str) -> Result<(), FrameError> {
    if len < min { Err(FrameError::InvalidLength { kind, len }) } else { Ok(()) }
}

fn exact_len(len: usize, want: usize, kind: &'static str) -> Result<(), FrameError> {
    if len != want { Err(FrameError::InvalidLength { kind, len }) } else { Ok(()) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all_frames() -> Vec<Frame> {
        vec![
            Frame::SynStream {
                stream_id: 7,
                associated_to: 3,
                priority: 5,
                slot: 2,
                flags: FLAG_FIN,
                header_block: Bytes::from_static(b"\x78\xf9abc"),
            },
            Frame::SynReply { stream_id: 9, flags: 0, header_block: Bytes::from_static(b"xyz") },
            Frame::RstStream { stream_id: 1, status: RST_CANCEL },
            Frame::Settings {
                flags: 1,
                entries: vec![Setting { flags: 1, id: 7, value: 65536 }, Setting { flags: 0, id: 4, value: 100 }],
            },
            Frame::Ping { id: 3 },
            Frame::GoAway { last_good_stream_id: 5, status: GOAWAY_OK },
            Frame::Headers { stream_id: 11, flags: FLAG_FIN, header_block: Bytes::new() },
            Frame::WindowUpdate { stream_id: 1, delta: 4096 },
            Frame::Data { stream_id: 1, fin: false, data: Bytes::from_static(b"hello") },
            Frame::Data { stream_id: 3, fin: true, data: Bytes::new() },
        ]
    }

    #[test]
    fn round_trips_every_frame_type() {
        for frame in all_frames() {
            let mut buf = BytesMut::new();
            frame.encode(&mut buf).unwrap();
            let decoded = Frame::decode(&mut buf, MAX_FRAME_LEN).unwrap();
            assert_eq!(decoded, Some(frame));
            assert!(buf.is_empty());
        }
    }

    #[test]
    fn partial_input_waits_for_the_rest() {
        let mut wire = BytesMut::new();
        for frame in all_frames() {
            frame.encode(&mut wire).unwrap();
        }
        // Feed one byte at a time: every frame must come out exactly once, in order.
        let mut buf = BytesMut::new();
        let mut decoded = Vec::new();
        for byte in wire.iter() {
            buf.put_u8(*byte);
            while let Some(frame) = Frame::decode(&mut buf, MAX_FRAME_LEN).unwrap() {
                decoded.push(frame);
            }
        }
        assert_eq!(decoded, all_frames());
        assert!(buf.is_empty());
    }

    #[test]
    fn wire_layout_matches_spdy3() {
        let mut buf = BytesMut::new();
        Frame::Ping { id: 1 }.encode(&mut buf).unwrap();
        assert_eq!(&buf[..], b"\x80\x03\x00\x06\x00\x00\x00\x04\x00\x00\x00\x01");
        buf.clear();
        Frame::Data { stream_id: 5, fin: true, data: Bytes::from_static(b"ab") }.encode(&mut buf).unwrap();
        assert_eq!(&buf[..], b"\x00\x00\x00\x05\x01\x00\x00\x02ab");
    }

    #[test]
    fn unknown_types_are_skipped_by_length() {
        let mut buf = BytesMut::from(&b"\x80\x03\x00\x0a\x00\x00\x00\x03abc"[..]);
        Frame::Ping { id: 1 }.encode(&mut buf).unwrap();
        assert_eq!(Frame::decode(&mut buf, MAX_FRAME_LEN).unwrap(), Some(Frame::Unknown { frame_type: 10 }));
        assert_eq!(Frame::decode(&mut buf, MAX_FRAME_LEN).unwrap(), Some(Frame::Ping { id: 1 }));
    }

    #[test]
    fn oversized_frames_are_refused_from_the_header_alone() {
        let mut buf = BytesMut::from(&b"\x00\x00\x00\x01\x00\x01\x00\x00"[..]);
        assert_eq!(Frame::decode(&mut buf, 1024), Err(FrameError::TooLarge { len: 65536, max: 1024 }));
        let data = Frame::Data { stream_id: 1, fin: false, data: Bytes::from(vec![0; MAX_FRAME_LEN + 1]) };
        assert!(matches!(data.encode(&mut BytesMut::new()), Err(FrameError::TooLarge { .. })));
    }

    #[test]
    fn malformed_frames_are_errors() {
        let mut buf = BytesMut::from(&b"\x00\x00\x00\x00\x00\x00\x00\x00"[..]);
        assert_eq!(Frame::decode(&mut buf, MAX_FRAME_LEN), Err(FrameError::ZeroStreamId { kind: "DATA" }));
        let mut buf = BytesMut::from(&b"\x80\x03\x00\x06\x00\x00\x00\x02\x00\x01"[..]);
        assert_eq!(Frame::decode(&mut buf, MAX_FRAME_LEN), Err(FrameError::InvalidLength { kind: "PING", len: 2 }));
        let mut buf = BytesMut::from(&b"\x80\x03\x00\x04\x00\x00\x00\x08\x00\x00\x00\x02\x00\x00\x00\x00"[..]);
        assert_eq!(Frame::decode(&mut buf, MAX_FRAME_LEN), Err(FrameError::InvalidLength { kind: "SETTINGS", len: 8 }));
    }
}
