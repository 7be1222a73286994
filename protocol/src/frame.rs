//! Framing: a little-endian `u32` length prefix, then the postcard body.
//!
//! ```text
//! | 0x05 0x00 0x00 0x00 | 0x01 0x02 0x03 0x04 0x05 | 0x02 0x00 0x00 0x00 | 0xaa 0xbb | ...
//! |  len = 5            |  body (5 bytes)          |  len = 2            |  body     |
//! ```
//!
//! [`encode_frame`] appends one frame to a buffer, so a sender can coalesce many frames into
//! one `write`. [`FrameReader`] accumulates bytes from a (non-blocking) stream and hands out
//! complete frame bodies; it checks each length prefix against the maximum frame size
//! *before* reserving memory for the body, so a lying header costs nothing.

use std::io::{self, Read};

use serde::{de::DeserializeOwned, Serialize};

use crate::{ProtocolError, LEN_PREFIX};

/// Appends `value` to `buf` as one frame (length prefix + postcard body).
///
/// On error `buf` is left as it was. `what` names the value in the error message.
///
/// ```
/// use greenroom_protocol::{encode_frame, FrameReader, DEFAULT_MAX_FRAME};
/// let mut buf = Vec::new();
/// encode_frame(&mut buf, &("hello", 7u32), DEFAULT_MAX_FRAME, "example")?;
/// let mut reader = FrameReader::new(DEFAULT_MAX_FRAME);
/// reader.push(&buf);
/// let body = reader.next_frame()?.expect("one whole frame");
/// let value: (String, u32) = greenroom_protocol::frame::decode(body, "example")?;
/// assert_eq!(value, ("hello".to_string(), 7));
/// # Ok::<(), greenroom_protocol::ProtocolError>(())
/// ```
pub fn encode_frame<T: Serialize + ?Sized>(
    buf: &mut Vec<u8>,
    value: &T,
    max_frame: u32,
    what: &'static str,
) -> Result<usize, ProtocolError> {
    let start = buf.len();
    buf.extend_from_slice(&[0; LEN_PREFIX]);
    if let Err(source) = postcard::to_io(value, &mut *buf) {
        buf.truncate(start);
        return Err(ProtocolError::Encode { what, source });
    }
    let body_len = buf.len() - start - LEN_PREFIX;
    if body_len as u64 > u64::from(max_frame) {
        buf.truncate(start);
        return Err(ProtocolError::FrameTooLarge {
            len: body_len as u64,
            max: max_frame,
        });
    }
    buf[start..start + LEN_PREFIX].copy_from_slice(&(body_len as u32).to_le_bytes());
    Ok(body_len + LEN_PREFIX)
}

/// Appends an already-encoded body as one frame.
pub fn encode_raw_frame(buf: &mut Vec<u8>, body: &[u8], max_frame: u32) -> Result<(), ProtocolError> {
    if body.is_empty() {
        return Err(ProtocolError::EmptyFrame);
    }
    if body.len() as u64 > u64::from(max_frame) {
        return Err(ProtocolError::FrameTooLarge {
            len: body.len() as u64,
            max: max_frame,
        });
    }
    buf.extend_from_slice(&(body.len() as u32).to_le_bytes());
    buf.extend_from_slice(body);
    Ok(())
}

/// Decodes one frame body as `T`; `what` names the expected type in the error.
///
/// The body must be exactly one value: bytes left over after it are an error too, so that a
/// garbled frame whose first bytes happen to spell a short valid value (a one-byte request,
/// say) is refused rather than acted on.
pub fn decode<T: DeserializeOwned>(body: &[u8], what: &'static str) -> Result<T, ProtocolError> {
    let (value, rest) = postcard::take_from_bytes(body).map_err(|source| ProtocolError::Decode { what, source })?;
    if !rest.is_empty() {
        return Err(ProtocolError::TrailingBytes {
            what,
            extra: rest.len(),
        });
    }
    Ok(value)
}

/// What one [`FrameReader::fill_from`] call saw on the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fill {
    /// Bytes read by this call.
    pub bytes: usize,
    /// The peer closed its side of the stream.
    pub eof: bool,
}

/// When [`FrameReader::fill_from`] may stop reading before its budget is spent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadUntil {
    /// Until a read fails with `WouldBlock`: the one safe choice when nothing else says
    /// the stream is drained (a socket just accepted, a read cut short by its budget).
    WouldBlock,
    /// Until a read returns fewer bytes than asked for. On a stream socket that means the
    /// receive queue was empty at that moment, so an edge-triggered poll reports the next
    /// byte as a new event (epoll(7)); this saves the `read` that would only say
    /// `WouldBlock`, one syscall per wake-up. Use it only for a readable event that did not
    /// also report the peer's hang-up: a hang-up is reported once, so after one the stream
    /// must be read to its end.
    ShortRead,
}

/// How much the reader asks of the stream per `read` call.
const READ_CHUNK: usize = 64 * 1024;
/// A new reader's buffer: small, so that an idle connection costs one page, not sixteen.
const FIRST_CHUNK: usize = 4 * 1024;

/// Reassembles frames from a byte stream.
///
/// Bytes live in one buffer `data[start..end]`; consumed frames advance `start`, and the
/// buffer is compacted only when more room is needed, so back-to-back small frames cost no
/// copying and no allocation.
#[derive(Debug)]
pub struct FrameReader {
    data: Vec<u8>,
    start: usize,
    end: usize,
    max_frame: u32,
}

impl FrameReader {
    /// A reader that refuses frames whose body exceeds `max_frame` bytes.
    pub fn new(max_frame: u32) -> Self {
        FrameReader {
            data: Vec::new(),
            start: 0,
            end: 0,
            max_frame,
        }
    }

    /// The largest frame body this reader accepts now.
    pub fn max_frame(&self) -> u32 {
        self.max_frame
    }

    /// Changes the largest frame body accepted from the next frame on: an acceptor reads a
    /// connection with [`crate::MAX_HANDSHAKE_FRAME`] until it has accepted the handshake,
    /// then raises the limit to the configured maximum. Bytes already buffered are kept.
    ///
    /// ```
    /// use greenroom_protocol::{encode_frame, FrameReader, DEFAULT_MAX_FRAME, MAX_HANDSHAKE_FRAME};
    /// let mut reader = FrameReader::new(MAX_HANDSHAKE_FRAME);
    /// let mut big = Vec::new();
    /// encode_frame(&mut big, &vec![7u8; 4096], DEFAULT_MAX_FRAME, "example")?;
    /// reader.push(&big);
    /// assert!(reader.next_frame().is_err(), "too large before the handshake");
    ///
    /// let mut reader = FrameReader::new(MAX_HANDSHAKE_FRAME);
    /// reader.push(&big);
    /// reader.set_max_frame(DEFAULT_MAX_FRAME); // the handshake was accepted
    /// assert!(reader.next_frame()?.is_some());
    /// # Ok::<(), greenroom_protocol::ProtocolError>(())
    /// ```
    pub fn set_max_frame(&mut self, max_frame: u32) {
        self.max_frame = max_frame;
    }

    /// Bytes received but not yet handed out as frames.
    pub fn buffered(&self) -> usize {
        self.end - self.start
    }

    /// Appends bytes obtained elsewhere (tests, or a reader that already read).
    pub fn push(&mut self, bytes: &[u8]) {
        self.reserve(bytes.len());
        self.data[self.end..self.end + bytes.len()].copy_from_slice(bytes);
        self.end += bytes.len();
    }

    /// Reads from `stream` until it would block (or, with [`ReadUntil::ShortRead`], until a
    /// read returns less than asked), reaches end of stream, or `budget` bytes have been
    /// read (so one busy peer cannot starve the others in an event loop).
    ///
    /// Interrupted reads are retried; a connection reset counts as end of stream; any other
    /// I/O error is returned.
    pub fn fill_from<R: Read>(&mut self, stream: &mut R, budget: usize, until: ReadUntil) -> io::Result<Fill> {
        let mut fill = Fill { bytes: 0, eof: false };
        while fill.bytes < budget {
            // Read into what is free, at least a small chunk; a reader whose reads fill its
            // buffer grows it up to READ_CHUNK.
            let free = self.data.len() - self.end;
            let chunk = if free == 0 {
                (self.data.len() * 2).clamp(FIRST_CHUNK, READ_CHUNK)
            } else {
                free.min(READ_CHUNK)
            };
            self.reserve(chunk);
            let asked = self.data.len() - self.end;
            match stream.read(&mut self.data[self.end..]) {
                Ok(0) => {
                    fill.eof = true;
                    break;
                }
                Ok(n) => {
                    self.end += n;
                    fill.bytes += n;
                    if n < asked && until == ReadUntil::ShortRead {
                        break;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                // A Unix socket whose peer closed with unread data reports ECONNRESET after
                // the last byte: the stream has ended, and what was read must not be lost.
                Err(e) if e.kind() == io::ErrorKind::ConnectionReset => {
                    fill.eof = true;
                    break;
                }
                Err(e) => return Err(e),
            }
        }
        Ok(fill)
    }

    /// The body of the next complete frame, or `None` if more bytes are needed.
    ///
    /// A length prefix of zero or above the maximum is an error; the reader should then be
    /// dropped together with its connection (the stream can no longer be trusted).
    pub fn next_frame(&mut self) -> Result<Option<&[u8]>, ProtocolError> {
        let available = self.end - self.start;
        if available < LEN_PREFIX {
            return Ok(None);
        }
        let mut prefix = [0u8; LEN_PREFIX];
        prefix.copy_from_slice(&self.data[self.start..self.start + LEN_PREFIX]);
        let len = u32::from_le_bytes(prefix);
        if len == 0 {
            return Err(ProtocolError::EmptyFrame);
        }
        if len > self.max_frame {
            return Err(ProtocolError::FrameTooLarge {
                len: u64::from(len),
                max: self.max_frame,
            });
        }
        let total = LEN_PREFIX + len as usize;
        if available < total {
            // Memory grows only as the bytes arrive (in `fill_from`), so a header that
            // announces a large frame and never sends it costs nothing.
            return Ok(None);
        }
        let body_start = self.start + LEN_PREFIX;
        self.start += total;
        if self.start == self.end {
            // Everything consumed: the next read starts at the front again, no copy needed.
            let (s, e) = (body_start, body_start + len as usize);
            self.start = 0;
            self.end = 0;
            return Ok(Some(&self.data[s..e]));
        }
        Ok(Some(&self.data[body_start..body_start + len as usize]))
    }

    /// Call when the stream has ended: an error if it ended inside a frame.
    pub fn finish(&self) -> Result<(), ProtocolError> {
        let have = self.end - self.start;
        if have == 0 {
            return Ok(());
        }
        let need = if have >= LEN_PREFIX {
            let mut prefix = [0u8; LEN_PREFIX];
            prefix.copy_from_slice(&self.data[self.start..self.start + LEN_PREFIX]);
            LEN_PREFIX + u32::from_le_bytes(prefix) as usize
        } else {
            LEN_PREFIX
        };
        Err(ProtocolError::Truncated { have, need })
    }

    /// Ensures room for `extra` more bytes after `end`, compacting before growing.
    fn reserve(&mut self, extra: usize) {
        if self.data.len() - self.end >= extra {
            return;
        }
        if self.start > 0 {
            self.data.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        if self.data.len() - self.end < extra {
            let want = (self.end + extra).max(FIRST_CHUNK);
            self.data.resize(want, 0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::DEFAULT_MAX_FRAME;
    use proptest::prelude::*;

    /// A stream that hands out its chunks one per `read` (a short read each), then
    /// `WouldBlock`, and counts the calls.
    struct Chunks {
        chunks: std::collections::VecDeque<Vec<u8>>,
        reads: usize,
    }

    impl Read for Chunks {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            self.reads += 1;
            let Some(chunk) = self.chunks.pop_front() else {
                return Err(io::ErrorKind::WouldBlock.into());
            };
            buf[..chunk.len()].copy_from_slice(&chunk);
            Ok(chunk.len())
        }
    }

    #[test]
    fn short_read_mode_stops_at_the_first_short_read_and_would_block_mode_reads_on() {
        let bytes = frames_of(&[vec![1; 10], vec![2; 10]]);
        let first_frame = bytes.len() / 2;
        let (a, b) = bytes.split_at(first_frame);
        let chunks = || Chunks {
            chunks: [a.to_vec(), b.to_vec()].into(),
            reads: 0,
        };

        let (mut r, mut s) = (FrameReader::new(DEFAULT_MAX_FRAME), chunks());
        let fill = r.fill_from(&mut s, usize::MAX, ReadUntil::ShortRead).unwrap();
        assert_eq!(
            (fill.bytes, s.reads),
            (first_frame, 1),
            "one read, and no read that says WouldBlock"
        );
        assert!(r.next_frame().unwrap().is_some());
        assert!(r.next_frame().unwrap().is_none());

        let (mut r, mut s) = (FrameReader::new(DEFAULT_MAX_FRAME), chunks());
        let fill = r.fill_from(&mut s, usize::MAX, ReadUntil::WouldBlock).unwrap();
        assert_eq!((fill.bytes, s.reads), (bytes.len(), 3), "read until WouldBlock");
    }

    fn frames_of(values: &[Vec<u8>]) -> Vec<u8> {
        let mut buf = Vec::new();
        for v in values {
            encode_frame(&mut buf, v, DEFAULT_MAX_FRAME, "bytes").unwrap();
        }
        buf
    }

    #[test]
    fn a_body_with_bytes_after_its_value_is_refused() {
        // `0` is a complete `u8`; what follows must not be ignored.
        let err = decode::<u8>(&[0, 6, 1], "a byte").unwrap_err();
        assert!(matches!(err, ProtocolError::TrailingBytes { extra: 2, .. }), "{err}");
        assert!(err.to_string().contains("2 unexpected bytes"), "{err}");
        assert_eq!(decode::<u8>(&[7], "a byte").unwrap(), 7);
    }

    #[test]
    fn back_to_back_frames_in_one_read() {
        let values = vec![vec![1u8, 2, 3], vec![], vec![9; 1000]];
        let mut r = FrameReader::new(DEFAULT_MAX_FRAME);
        r.push(&frames_of(&values));
        for v in &values {
            let body = r.next_frame().unwrap().unwrap();
            assert_eq!(&decode::<Vec<u8>>(body, "bytes").unwrap(), v);
        }
        assert!(r.next_frame().unwrap().is_none());
        r.finish().unwrap();
    }

    #[test]
    fn lying_header_is_refused_before_allocating() {
        let mut r = FrameReader::new(1024);
        r.push(&u32::MAX.to_le_bytes());
        match r.next_frame() {
            Err(ProtocolError::FrameTooLarge { len, max }) => {
                assert_eq!(len, u64::from(u32::MAX));
                assert_eq!(max, 1024);
            }
            other => panic!("expected FrameTooLarge, got {other:?}"),
        }
        assert!(r.data.len() < 1024 * 1024, "no allocation for the lying length");
    }

    #[test]
    fn zero_length_prefix_is_refused() {
        let mut r = FrameReader::new(1024);
        r.push(&[0, 0, 0, 0, 1]);
        assert!(matches!(r.next_frame(), Err(ProtocolError::EmptyFrame)));
    }

    #[test]
    fn truncated_stream_is_reported() {
        let buf = frames_of(&[vec![7; 100]]);
        let mut r = FrameReader::new(DEFAULT_MAX_FRAME);
        r.push(&buf[..50]);
        assert!(r.next_frame().unwrap().is_none());
        match r.finish() {
            Err(ProtocolError::Truncated { have: 50, need }) => assert_eq!(need, buf.len()),
            other => panic!("expected Truncated, got {other:?}"),
        }
    }

    #[test]
    fn oversize_value_is_refused_at_encode() {
        let mut buf = vec![42u8];
        let err = encode_frame(&mut buf, &vec![0u8; 2000], 1000, "big").unwrap_err();
        assert!(matches!(err, ProtocolError::FrameTooLarge { max: 1000, .. }));
        assert_eq!(buf, vec![42u8], "buffer untouched on error");
    }

    #[test]
    fn huge_frame_at_the_limit_round_trips() {
        let big = vec![0xabu8; 4 * 1024 * 1024];
        let mut buf = Vec::new();
        encode_frame(&mut buf, &big, DEFAULT_MAX_FRAME, "big").unwrap();
        let mut r = FrameReader::new(DEFAULT_MAX_FRAME);
        let mut cursor = std::io::Cursor::new(buf);
        loop {
            let fill = r.fill_from(&mut cursor, usize::MAX, ReadUntil::WouldBlock).unwrap();
            if fill.eof {
                break;
            }
        }
        let body = r.next_frame().unwrap().unwrap();
        assert_eq!(decode::<Vec<u8>>(body, "big").unwrap(), big);
    }

    proptest! {
        #[test]
        fn round_trip_in_any_chunking(
            values in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..300), 1..20),
            chunk in 1usize..64,
        ) {
            let buf = frames_of(&values);
            let mut r = FrameReader::new(DEFAULT_MAX_FRAME);
            let mut got = Vec::new();
            for piece in buf.chunks(chunk) {
                r.push(piece);
                while let Some(body) = r.next_frame().unwrap() {
                    got.push(decode::<Vec<u8>>(body, "bytes").unwrap());
                }
            }
            prop_assert_eq!(got, values);
            prop_assert!(r.finish().is_ok());
        }

        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
            let mut r = FrameReader::new(4096);
            r.push(&bytes);
            loop {
                match r.next_frame() {
                    Ok(Some(body)) => { let _ = decode::<crate::DataFrame>(body, "data frame"); }
                    Ok(None) => break,
                    Err(_) => break,
                }
            }
            let _ = r.finish();
        }
    }
}
