//! A framed, non-blocking control connection: frames in, frames out, nothing else.
//!
//! Used for the small, rare frames between the admin and its hosts and clients. (The data
//! path has its own connection types in [`super::endpoint`], with sequence numbers and
//! acknowledgements.)

use std::io::{self, Write};

use greenroom_protocol::{encode_frame, FrameReader, ProtocolError, ReadUntil, MAX_HANDSHAKE_FRAME};
use mio::net::UnixStream;
use serde::Serialize;

/// Per-read budget so that one chatty peer cannot starve an event loop.
pub(crate) const READ_BUDGET: usize = 256 * 1024;

/// One control connection.
pub(crate) struct Framed {
    pub stream: UnixStream,
    reader: FrameReader,
    out: Vec<u8>,
    out_pos: usize,
    max_frame: u32,
    /// Accepted, and the peer's handshake not yet accepted: frames are read one at a time
    /// with the limit [`MAX_HANDSHAKE_FRAME`] (see [`Framed::accepting`]).
    awaiting_handshake: bool,
}

/// What [`Framed::read`] saw.
pub(crate) struct ReadOutcome {
    /// Complete frame bodies, in order.
    pub frames: Vec<Vec<u8>>,
    /// The peer closed the connection (after the frames above).
    pub closed: bool,
    /// The read budget ran out before the socket would block: read again.
    pub more: bool,
}

impl Framed {
    pub fn new(stream: UnixStream, max_frame: u32) -> Self {
        Framed {
            stream,
            reader: FrameReader::new(max_frame),
            out: Vec::new(),
            out_pos: 0,
            max_frame,
            awaiting_handshake: false,
        }
    }

    /// An accepted connection, whose first frame must be the peer's handshake: until
    /// [`Framed::handshake_accepted`], [`Framed::read`] hands out one frame at a time and
    /// refuses one larger than [`MAX_HANDSHAKE_FRAME`], so that a peer that has not said who
    /// it is cannot make this process buffer more than a handshake needs.
    pub fn accepting(stream: UnixStream, max_frame: u32) -> Self {
        let mut framed = Framed::new(stream, max_frame);
        framed.reader.set_max_frame(MAX_HANDSHAKE_FRAME);
        framed.awaiting_handshake = true;
        framed
    }

    /// The peer's handshake was accepted: frames up to the configured maximum from now on.
    /// Frames it sent behind the handshake are still buffered: read again to get them.
    pub fn handshake_accepted(&mut self) {
        self.awaiting_handshake = false;
        self.reader.set_max_frame(self.max_frame);
    }

    /// Queues one frame; call [`Framed::flush`] to write it.
    pub fn queue<T: Serialize>(&mut self, value: &T, what: &'static str) -> Result<(), ProtocolError> {
        encode_frame(&mut self.out, value, self.max_frame, what).map(|_| ())
    }

    /// Queues raw, already-framed bytes (a handshake).
    pub fn queue_raw(&mut self, bytes: &[u8]) {
        self.out.extend_from_slice(bytes);
    }

    /// Writes what is queued until done or the socket would block. `Ok(true)` when done.
    pub fn flush(&mut self) -> io::Result<bool> {
        while self.out_pos < self.out.len() {
            match self.stream.write(&self.out[self.out_pos..]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => self.out_pos += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) => return Err(e),
            }
        }
        self.out.clear();
        self.out_pos = 0;
        Ok(true)
    }

    /// Whether queued bytes are still unwritten.
    pub fn has_pending_output(&self) -> bool {
        self.out_pos < self.out.len()
    }

    /// Reads what the socket has and returns the complete frames (only the first, while the
    /// handshake is awaited: what follows it may be larger than the handshake limit, and is
    /// read once the handshake is accepted, `more` saying so).
    pub fn read(&mut self) -> Result<ReadOutcome, ReadError> {
        let fill = self
            .reader
            .fill_from(&mut self.stream, READ_BUDGET, ReadUntil::WouldBlock)
            .map_err(ReadError::Io)?;
        let mut frames = Vec::new();
        while let Some(body) = self.reader.next_frame().map_err(ReadError::Protocol)? {
            frames.push(body.to_vec());
            if self.awaiting_handshake {
                break;
            }
        }
        if self.awaiting_handshake && !frames.is_empty() && self.reader.buffered() > 0 {
            // The end of the stream, if it came, is seen again on the next read.
            return Ok(ReadOutcome {
                frames,
                closed: false,
                more: true,
            });
        }
        if fill.eof {
            self.reader.finish().map_err(ReadError::Protocol)?;
        }
        Ok(ReadOutcome {
            frames,
            closed: fill.eof,
            more: !fill.eof && fill.bytes >= READ_BUDGET,
        })
    }
}

/// Reading a control connection failed.
#[derive(Debug)]
pub(crate) enum ReadError {
    Io(io::Error),
    Protocol(ProtocolError),
}

impl std::fmt::Display for ReadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReadError::Io(e) => write!(f, "read failed: {e}"),
            ReadError::Protocol(e) => write!(f, "{e}"),
        }
    }
}
