//! The admin's side of logging: the sink every record of the system goes to, and the stderr
//! pipe of each host process.
//!
//! * [`Sink`] — the one place records are written: the admin's stderr (the client's stderr,
//!   or the log file the client opened there). The loop appends lines to a buffer and writes
//!   it without ever blocking: to a pipe or terminal through a non-blocking open file
//!   description of its own (the inherited one is shared with the client and must stay as
//!   it is), to a socket with `MSG_DONTWAIT`; what does not fit waits for the sink to become
//!   writable, a `mio` event like any other. (A regular file takes writes without waiting
//!   for a reader, so it is written directly.) No thread: a second thread in the admin
//!   would make every fork of a host measurably slower. The buffer is bounded: past
//!   [`SOFT_CAP`] the loop leaves host pipes unread until the sink has taken some, so a
//!   host logging faster than the sink can take it is slowed down by its own full pipe
//!   instead of growing the admin. The admin's own records are never held back; past
//!   [`HARD_CAP`] they are counted and dropped, and the count written once there is room.
//!   Nor do they wait for the loop: each is written (without waiting) by the thread that
//!   makes it, the loop's or another's, so that a record of a thread of the admin reaches
//!   the sink at once even while the loop sleeps (it once waited for the loop's next
//!   wake-up, 16 s or more on an idle system, and was lost if the admin was killed
//!   meanwhile). Only what the sink refuses for now waits, for its writable event.
//! * [`LogPipe`] — one per host process (incarnation): the read end of the pipe that is the
//!   host's fd 2, non-blocking and close-on-exec, in the admin's loop. It is read with a
//!   budget per wake-up, split into lines, and each line goes to the sink with the host's
//!   attribution (`actor`, `actor_type`, `pid`, `incarnation`, the fields the admin's own
//!   records about an actor have), which the pipe keeps itself: a pipe outlives its process
//!   until its end of file, and needs no actor record for that. The line format is in
//!   [`crate::logging`].

use std::{
    fs::File,
    io::{self, Read, Write},
    os::{
        fd::{AsRawFd, FromRawFd, OwnedFd, RawFd},
        unix::fs::{FileTypeExt, OpenOptionsExt},
    },
    sync::{Arc, Mutex, MutexGuard, PoisonError},
    time::{Duration, Instant},
};

use greenroom_protocol::Address;
use mio::{unix::pipe, unix::SourceFd, Interest, Registry, Token};

use crate::logging;

/// Past this many unwritten bytes the loop leaves host pipes unread until the sink takes some.
const SOFT_CAP: usize = 1 << 20;
/// Past this many unwritten bytes even the admin's own records are dropped (and counted).
const HARD_CAP: usize = 16 << 20;
/// The longest line kept whole: a longer one is forwarded in pieces of this size, so a host
/// writing without newlines cannot make the admin hold more than this for it.
const MAX_LINE: usize = 64 * 1024;
/// How much of one host pipe is read per wake-up before the others are served.
pub(crate) const READ_BUDGET: usize = 64 * 1024;
/// How much of a pipe is still read when the admin stops.
const FINAL_READ: usize = 4 << 20;

/// How the sink's bytes leave the admin.
enum Output {
    /// A non-blocking open file description of the pipe or terminal that is fd 2.
    NonBlocking(File),
    /// fd 2 is a socket: each `send` is non-blocking by its flag.
    Socket(File),
    /// fd 2 itself: a regular file, which never makes a writer wait for a reader; also the
    /// last resort when no non-blocking description can be had (no `/proc`), blocking then.
    Direct(File),
    /// There is no stderr (fd 2 is closed): records have nowhere to go.
    Discard,
}

impl Output {
    /// The output for this process's stderr.
    fn for_stderr() -> io::Result<Output> {
        // SAFETY: F_DUPFD_CLOEXEC takes an fd and a minimum and returns a new fd or -1; no
        // memory is passed.
        let fd = unsafe { libc::fcntl(libc::STDERR_FILENO, libc::F_DUPFD_CLOEXEC, 3) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: fcntl just returned this new descriptor; nobody else owns it.
        let own = unsafe { File::from_raw_fd(fd) };
        let kind = own.metadata()?.file_type();
        if kind.is_socket() {
            return Ok(Output::Socket(own));
        }
        if kind.is_file() {
            return Ok(Output::Direct(own));
        }
        // A pipe, a terminal or another device: open it again (a new description of the
        // same pipe or device), non-blocking, without making a terminal ours.
        match std::fs::OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
            .open("/proc/self/fd/2")
        {
            Ok(reopened) => Ok(Output::NonBlocking(reopened)),
            Err(_) => Ok(Output::Direct(own)),
        }
    }

    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        match self {
            Output::Discard => Ok(bytes.len()),
            Output::NonBlocking(f) | Output::Direct(f) => f.write(bytes),
            Output::Socket(f) => {
                // SAFETY: send reads `bytes.len()` bytes from the slice and writes nothing.
                let n = unsafe {
                    libc::send(
                        f.as_raw_fd(),
                        bytes.as_ptr().cast(),
                        bytes.len(),
                        libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
                    )
                };
                if n < 0 {
                    Err(io::Error::last_os_error())
                } else {
                    Ok(n as usize)
                }
            }
        }
    }

    /// The fd to wait on for writability, if writes to it can be refused for now.
    fn pollable(&self) -> Option<RawFd> {
        match self {
            Output::NonBlocking(f) | Output::Socket(f) => Some(f.as_raw_fd()),
            Output::Direct(_) | Output::Discard => None,
        }
    }
}

struct State {
    /// Where the bytes go; `None` in tests, which look at `buf`.
    out: Option<Output>,
    buf: Vec<u8>,
    /// How much of `buf` is written.
    written: usize,
    /// The admin's own records dropped past [`HARD_CAP`], not yet reported.
    dropped: u64,
}

impl State {
    fn pending(&self) -> usize {
        self.buf.len() - self.written
    }

    /// [`Sink::push`] under the sink's lock (`lines` not empty).
    fn push(&mut self, lines: &[u8]) {
        if self.pending() >= HARD_CAP {
            self.dropped += 1;
            return;
        }
        self.buf.extend_from_slice(lines);
    }

    /// [`Sink::flush`] under the sink's lock.
    fn flush(&mut self) -> bool {
        if self.dropped > 0 && self.pending() < HARD_CAP {
            let note = format!(
                "greenroom: {} log records of the admin were dropped: the log sink did not keep up\n",
                std::mem::take(&mut self.dropped)
            );
            self.buf.extend_from_slice(note.as_bytes());
        }
        let Some(out) = self.out.as_mut() else {
            return self.pending() == 0;
        };
        while self.written < self.buf.len() {
            match out.write(&self.buf[self.written..]) {
                Ok(0) => break,
                Ok(n) => self.written += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                // Refused for now: the rest waits for the sink's writable event.
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                // The sink is gone (its reader closed it, the disk is full): nowhere to
                // report it, so what is pending is dropped rather than held forever.
                Err(_) => self.written = self.buf.len(),
            }
        }
        let done = self.written == self.buf.len();
        if done {
            self.buf.clear();
            self.written = 0;
        } else if self.written >= SOFT_CAP {
            // Keep the buffer from only ever growing while the sink is slow.
            let written = self.written;
            self.buf.drain(..written);
            self.written = 0;
        }
        done
    }
}

/// The system's log sink, as the admin's loop and its `tracing` subscriber use it. Shared by
/// the loop and any thread that logs (the subscriber needs a `Send + Sync` writer).
#[derive(Clone)]
pub(crate) struct Sink(Arc<Mutex<State>>);

impl Sink {
    /// The sink on this process's stderr.
    pub fn stderr() -> Sink {
        Sink::with_output(Some(Output::for_stderr().unwrap_or(Output::Discard)))
    }

    fn with_output(out: Option<Output>) -> Sink {
        Sink(Arc::new(Mutex::new(State {
            out,
            buf: Vec::new(),
            written: 0,
            dropped: 0,
        })))
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Registers the sink for writability with the loop, when writes to it can be refused.
    pub fn register(&self, registry: &Registry, token: Token) -> io::Result<()> {
        let mut st = self.lock();
        let Some(fd) = st.out.as_ref().and_then(Output::pollable) else {
            return Ok(());
        };
        match registry.register(&mut SourceFd(&fd), token, Interest::WRITABLE) {
            // A device epoll cannot watch (`/dev/null`, for one): it never makes a writer
            // wait either, so write to it directly.
            Err(e) if e.raw_os_error() == Some(libc::EPERM) => {
                if let Some(Output::NonBlocking(f)) = st.out.take() {
                    st.out = Some(Output::Direct(f));
                }
                Ok(())
            }
            other => other,
        }
    }

    /// Whether host lines may be added now; if not, leave the pipes unread until
    /// [`Sink::flush`] has made room.
    pub fn has_room(&self) -> bool {
        self.lock().pending() < SOFT_CAP
    }

    /// Adds complete lines, to be written by the next [`Sink::flush`].
    pub fn push(&self, lines: &[u8]) {
        if lines.is_empty() {
            return;
        }
        self.lock().push(lines);
    }

    /// Writes what it can without waiting. `true` when everything is written.
    pub fn flush(&self) -> bool {
        self.lock().flush()
    }

    /// Writes what is left, waiting up to `timeout` for the sink (the admin is exiting; a
    /// stuck stderr must not keep it from doing so).
    pub fn finish(&self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while !self.flush() {
            let Some(fd) = self.lock().out.as_ref().and_then(Output::pollable) else {
                return;
            };
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return;
            }
            let mut pfd = libc::pollfd {
                fd,
                events: libc::POLLOUT,
                revents: 0,
            };
            let ms = left.as_millis().clamp(1, i32::MAX as u128) as libc::c_int;
            // SAFETY: poll reads and writes the one pollfd passed, for the duration of the
            // call.
            unsafe { libc::poll(&mut pfd, 1, ms) };
        }
    }
}

/// The sink as the admin's `tracing` subscriber writes to it: one record per write.
impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Sink {
    type Writer = SinkRecord<'a>;

    fn make_writer(&'a self) -> Self::Writer {
        SinkRecord(self)
    }
}

/// One of the admin's own records on its way to the sink.
pub(crate) struct SinkRecord<'a>(&'a Sink);

impl Write for SinkRecord<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        // Added and written now under one lock, whichever thread logs: a thread other than
        // the loop's has nobody to flush after it. A write that would block leaves the rest
        // to the loop, which the sink's writable event wakes.
        let mut st = self.0.lock();
        if !buf.is_empty() {
            st.push(buf);
        }
        st.flush();
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// What reading a [`LogPipe`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PipeRead {
    /// Everything there was has been read: wait for the next readiness event.
    Drained,
    /// The budget ran out first: read again after the others were served.
    More,
    /// End of file (every writer has exited) or an error: close the pipe.
    Closed,
}

/// The admin's end of one host process's stderr.
pub(crate) struct LogPipe {
    pub rx: pipe::Receiver,
    /// ` actor=@2 actor_type=… pid=… incarnation=…`, appended to each of its lines.
    attribution: String,
    /// The start of a line whose end has not arrived yet.
    partial: Vec<u8>,
}

/// A new pipe for a host's stderr: the host's end (blocking, as a process expects its
/// stderr to be; close-on-exec until it is made the child's fd 2) and the admin's
/// (non-blocking, close-on-exec).
pub(crate) fn stderr_pipe() -> io::Result<(OwnedFd, pipe::Receiver)> {
    let (tx, rx) = pipe::new()?;
    // The two ends are separate open file descriptions: this leaves the admin's end
    // non-blocking.
    tx.set_nonblocking(false)?;
    Ok((OwnedFd::from(tx), rx))
}

impl LogPipe {
    /// The admin's end of the stderr pipe of `actor`'s host process `pid`.
    pub fn new(rx: pipe::Receiver, actor: Address, type_name: &str, pid: i32, incarnation: u32) -> LogPipe {
        LogPipe::for_process(
            rx,
            format!(" actor={actor} actor_type={type_name} pid={pid} incarnation={incarnation}"),
        )
    }

    /// The admin's end of the stderr pipe of another process of the system (the gateway),
    /// its lines attributed with `attribution` (` process=gateway pid=…`).
    pub fn for_process(rx: pipe::Receiver, attribution: String) -> LogPipe {
        LogPipe {
            rx,
            attribution,
            partial: Vec::new(),
        }
    }

    /// Reads up to `budget` bytes and sends the complete lines to `sink`.
    pub fn read(&mut self, sink: &Sink, budget: usize) -> PipeRead {
        let mut chunk = [0u8; 16 * 1024];
        let mut out = Vec::new();
        let mut now = None;
        let mut read = 0;
        let outcome = loop {
            if read >= budget {
                break PipeRead::More;
            }
            match self.rx.read(&mut chunk) {
                Ok(0) => break PipeRead::Closed,
                Ok(n) => {
                    read += n;
                    self.take_lines(&chunk[..n], &mut out, &mut now);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break PipeRead::Drained,
                Err(e) => {
                    tracing::debug!(error = %e, "reading a host's stderr failed; closing it");
                    break PipeRead::Closed;
                }
            }
        };
        if outcome == PipeRead::Closed {
            self.flush_partial(&mut out, &mut now);
        }
        sink.push(&out);
        outcome
    }

    /// Reads what is left (the process has exited, or the admin is stopping), up to a bound
    /// (an orphan of the host may still hold the pipe and keep writing).
    pub fn read_final(&mut self, sink: &Sink) {
        if self.read(sink, FINAL_READ) != PipeRead::Closed {
            let (mut out, mut now) = (Vec::new(), None);
            self.flush_partial(&mut out, &mut now);
            sink.push(&out);
        }
    }

    /// Appends `bytes` to what came before and turns every complete line into a sink line.
    fn take_lines(&mut self, bytes: &[u8], out: &mut Vec<u8>, now: &mut Option<String>) {
        let mut rest = bytes;
        while let Some(end) = rest.iter().position(|&b| b == b'\n') {
            let (line, after) = rest.split_at(end);
            if self.partial.is_empty() {
                logging::write_host_line(out, line, &self.attribution, now);
            } else {
                self.partial.extend_from_slice(line);
                logging::write_host_line(out, &self.partial, &self.attribution, now);
                self.partial.clear();
            }
            rest = &after[1..];
        }
        self.partial.extend_from_slice(rest);
        while self.partial.len() >= MAX_LINE {
            let piece: Vec<u8> = self.partial.drain(..MAX_LINE).collect();
            logging::write_host_line(out, &piece, &self.attribution, now);
        }
    }

    /// A last line without its newline (a process that died mid-line) is a line too.
    fn flush_partial(&mut self, out: &mut Vec<u8>, now: &mut Option<String>) {
        if !self.partial.is_empty() {
            let line = std::mem::take(&mut self.partial);
            logging::write_host_line(out, &line, &self.attribution, now);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines_of(pipe: &mut LogPipe, chunks: &[&[u8]]) -> Vec<String> {
        let (mut out, mut now) = (Vec::new(), None);
        for c in chunks {
            pipe.take_lines(c, &mut out, &mut now);
        }
        pipe.flush_partial(&mut out, &mut now);
        String::from_utf8(out).unwrap().lines().map(str::to_owned).collect()
    }

    fn test_pipe() -> LogPipe {
        let (_tx, rx) = stderr_pipe().unwrap();
        LogPipe::new(rx, Address::local(2), "t::A", 42, 1)
    }

    #[test]
    fn lines_split_across_reads_are_joined_and_a_last_partial_line_kept() {
        let mut pipe = test_pipe();
        let lines = lines_of(&mut pipe, &[b"one\ntw", b"o\n", b"\nthr", b"ee"]);
        assert_eq!(lines.len(), 4, "{lines:?}");
        for (line, text) in lines.iter().zip(["one", "two", "", "three"]) {
            assert!(
                line.ends_with(&format!(
                    "WARN stderr: {text} actor=@2 actor_type=t::A pid=42 incarnation=1"
                )),
                "{line}"
            );
        }
    }

    #[test]
    fn an_endless_line_is_forwarded_in_pieces() {
        let mut pipe = test_pipe();
        let long = vec![b'x'; MAX_LINE * 2 + 10];
        let lines = lines_of(&mut pipe, &[&long]);
        assert_eq!(lines.len(), 3);
        let xs: usize = lines.iter().map(|l| l.matches('x').count()).sum();
        assert_eq!(xs, long.len());
    }

    #[test]
    fn a_slow_output_fills_the_sink_without_blocking_and_drains_when_it_moves() {
        let (tx, mut rx) = pipe::new().unwrap();
        let sink = Sink::with_output(Some(Output::NonBlocking(File::from(OwnedFd::from(tx)))));
        // Nobody reads: pushing and flushing never block; past the soft cap there is no
        // room for host lines.
        let line = [&[b'x'; 1023][..], b"\n"].concat();
        let mut pushed = 0;
        while sink.has_room() {
            sink.push(&line);
            pushed += line.len();
            sink.flush();
            assert!(pushed <= 3 * SOFT_CAP, "the sink never filled up");
        }
        assert!(!sink.flush(), "the rest waits for the pipe to become writable");
        // Once the reader reads, flushing makes progress until all is written.
        let mut got = 0;
        let mut chunk = vec![0u8; 64 * 1024];
        while got < pushed {
            sink.flush();
            match rx.read(&mut chunk) {
                Ok(n) => got += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => panic!("{e}"),
            }
        }
        assert!(sink.flush() && sink.has_room());
        assert_eq!(got, pushed, "every byte was written once");
    }

    #[test]
    fn a_record_made_on_another_thread_is_written_at_once() {
        let (tx, mut rx) = pipe::new().unwrap();
        let sink = Sink::with_output(Some(Output::NonBlocking(File::from(OwnedFd::from(tx)))));
        // Nobody calls `flush` (the loop sleeps): the record is in the pipe when `write`
        // returns on the logging thread.
        let writer = sink.clone();
        let started = Instant::now();
        std::thread::spawn(move || {
            use tracing_subscriber::fmt::MakeWriter;
            writer
                .make_writer()
                .write_all(b"2026-11-25T10:00:00Z  WARN t: from a thread\n")
                .unwrap();
        })
        .join()
        .unwrap();
        let mut got = vec![0u8; 256];
        let n = rx.read(&mut got).expect("the record is in the pipe");
        assert!(String::from_utf8_lossy(&got[..n]).contains("from a thread"));
        assert!(started.elapsed() < Duration::from_secs(1));
        assert_eq!(sink.lock().pending(), 0, "nothing left for the loop");
    }

    #[test]
    fn reading_a_pipe_forwards_lines_until_end_of_file() {
        let (tx, rx) = stderr_pipe().unwrap();
        let mut pipe = LogPipe::new(rx, Address::local(3), "t::B", 7, 2);
        let sink = Sink::with_output(None);
        let mut tx = std::fs::File::from(tx);
        tx.write_all(b"hello\nbye").unwrap();
        assert_eq!(pipe.read(&sink, READ_BUDGET), PipeRead::Drained);
        drop(tx);
        assert_eq!(pipe.read(&sink, READ_BUDGET), PipeRead::Closed);
        let buffered = String::from_utf8(sink.lock().buf.clone()).unwrap();
        assert!(buffered.contains("stderr: hello actor=@3 actor_type=t::B pid=7 incarnation=2"));
        assert!(buffered.contains("stderr: bye actor=@3 actor_type=t::B"));
    }
}
