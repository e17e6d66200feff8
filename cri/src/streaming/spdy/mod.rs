//! SPDY/3.1, server side, as the Go clients of the CRI streaming protocols speak it
//! (moby/spdystream under client-go: kubectl/crictl/critest exec, attach and port-forward).
//!
//! Only what those clients use is implemented: streams opened by the client, no server push, no
//! flow control, no server-initiated PINGs. Use it after the HTTP upgrade has answered
//! `101 Switching Protocols`:
//!
//! ```text
//! let (connection, mut incoming) = spdy::serve(upgraded_io);
//! while let Some(stream) = incoming.next().await {
//!     match stream.header("streamtype") {
//!         Some("stdout") => {
//!             stream.reply(); // the client waits for this before opening its next stream
//!             let (_reader, mut writer) = stream.split();
//!             writer.send(b"hello").await?;
//!             writer.finish().await?; // the client reads EOF
//!         }
//!         _ => stream.reset(),
//!     }
//! }
//! connection.close().await; // GOAWAY, then wait briefly for the client to hang up
//! ```
//!
//! API:
//! - [`serve`]`(io) -> (`[`Connection`]`, `[`Incoming`]`)` spawns the connection's tasks.
//! - [`Incoming::next`] yields each [`Stream`] the client opens, in order; `None` after the
//!   client's GOAWAY or the end of the connection.
//! - [`Stream`]: `id`, [`Stream::header`] (case-insensitive), [`Stream::reply`] (SYN_REPLY),
//!   [`Stream::reset`] (RST_STREAM CANCEL), [`Stream::split`] into [`StreamReader`]
//!   ([`StreamReader::recv`]: DATA payloads, `None` at the client's FIN/RST/GOAWAY or connection
//!   end) and [`StreamWriter`] ([`StreamWriter::send`], [`StreamWriter::finish`] = FIN; sending
//!   replies first if needed).
//! - [`Connection::close`]: graceful end. Dropping every handle also ends the connection.

mod frame;
mod headers;
mod session;

pub use session::{Connection, Incoming, Stream, StreamReader, StreamWriter, serve};
/// The frame and header block codecs on their own, for the fuzz targets (fuzz/).
#[doc(hidden)]
pub use {frame::Frame, headers::HeaderDecompressor};
