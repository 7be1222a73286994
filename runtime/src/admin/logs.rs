//! The admin's side of logging: the sink every record of the system goes to, and the stderr
//! pipe of each host process.
//!
//! * [`Sink`] — the one place records are written: the admin's stderr (the client's stderr,
//!   or the log file the client opened there). The loop only appends lines to a buffer; a
//!   writer thread does the writing, so a slow or stuck stderr (a terminal on hold, a full
//!   pipe nobody reads) never blocks the loop. The buffer is bounded: past [`SOFT_CAP`] the
//!   loop stops reading host pipes until the writer has taken the buffer (and wakes the loop
//!   through its `mio::Waker`), so a host logging faster than the sink can take it is slowed
//!   down by its own full pipe instead of growing the admin. The admin's own records are
//!   never held back; past [`HARD_CAP`] they are counted and dropped, and the count written
//!   once there is room.
//! * [`LogPipe`] — one per host process (incarnation): the read end of the pipe that is the
//!   host's fd 2, non-blocking and close-on-exec, in the admin's loop. It is read with a
//!   budget per wake-up, split into lines, and each line goes to the sink with the host's
//!   attribution (`actor`, `actor_type`, `pid`, `incarnation`, the fields the admin's own
//!   records about an actor have), which the pipe keeps itself:
//!   a pipe outlives its process until its end-of-file, and needs no actor record for that.
//!   The line format is in [`crate::logging`].

use std::{
    io::{self, Read, Write},
    os::fd::OwnedFd,
    sync::{
        atomic::{AtomicBool, Ordering},
        mpsc, Arc, Condvar, Mutex, MutexGuard, OnceLock, PoisonError,
    },
    time::Duration,
};

use greenroom_protocol::Address;
use mio::unix::pipe;

use crate::logging;

/// Past this many buffered bytes the loop stops reading host pipes until the writer catches up.
const SOFT_CAP: usize = 1 << 20;
/// Past this many buffered bytes even the admin's own records are dropped (and counted).
const HARD_CAP: usize = 16 << 20;
/// The longest line kept whole: a longer one is forwarded in pieces of this size, so a host
/// writing without newlines cannot make the admin hold more than this for it.
const MAX_LINE: usize = 64 * 1024;
/// How much of one host pipe is read per wake-up before the others are served.
pub(crate) const READ_BUDGET: usize = 64 * 1024;
/// How much of a pipe is still read when the admin stops.
const FINAL_READ: usize = 4 << 20;

struct State {
    buf: Vec<u8>,
    /// The admin's own records dropped past [`HARD_CAP`], not yet reported.
    dropped: u64,
    /// The loop paused reading host pipes for lack of room and wants a wake-up.
    loop_waiting: bool,
    closing: bool,
}

struct Shared {
    state: Mutex<State>,
    /// Signalled when there is something to write, or the sink is closing.
    work: Condvar,
    /// Wakes the admin's loop when room is made while it waits for some.
    waker: OnceLock<mio::Waker>,
    /// No writer thread could be started: write in the caller's thread (blocking).
    direct: AtomicBool,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The system's log sink, as the admin's loop and its `tracing` subscriber use it.
#[derive(Clone)]
pub(crate) struct Sink(Arc<Shared>);

/// The writer thread behind a [`Sink`]; [`SinkThread::finish`] writes what is left.
pub(crate) struct SinkThread {
    shared: Arc<Shared>,
    done: Option<mpsc::Receiver<()>>,
}

impl Sink {
    /// Starts the sink on this process's stderr.
    pub fn start() -> (Sink, SinkThread) {
        Sink::start_on(Box::new(io::stderr()))
    }

    /// Starts the sink on `out`.
    fn start_on(out: Box<dyn Write + Send>) -> (Sink, SinkThread) {
        let sink = Sink::buffer_only();
        let (done_tx, done_rx) = mpsc::channel();
        let writer = sink.0.clone();
        let started = std::thread::Builder::new().name("greenroom-log".into()).spawn(move || {
            write_until_closed(&writer, out);
            let _ = done_tx.send(());
        });
        // Without a thread (the process limit is reached), write in the loop: late, but
        // nothing is lost.
        sink.0.direct.store(started.is_err(), Ordering::Relaxed);
        let thread = SinkThread {
            shared: sink.0.clone(),
            done: started.is_ok().then_some(done_rx),
        };
        (sink, thread)
    }

    /// A sink whose lines stay in its buffer until a writer is started for it.
    fn buffer_only() -> Sink {
        Sink(Arc::new(Shared {
            state: Mutex::new(State {
                buf: Vec::new(),
                dropped: 0,
                loop_waiting: false,
                closing: false,
            }),
            work: Condvar::new(),
            waker: OnceLock::new(),
            direct: AtomicBool::new(false),
        }))
    }

    /// Lets the writer wake the admin's loop when it made room (see [`Sink::has_room`]).
    pub fn set_waker(&self, waker: mio::Waker) {
        let _ = self.0.waker.set(waker);
    }

    /// Whether host lines may be added now. If not, the loop is woken (through the waker)
    /// once there is room again, and should leave the pipes unread until then.
    pub fn has_room(&self) -> bool {
        if self.0.direct.load(Ordering::Relaxed) {
            return true;
        }
        let mut st = self.0.lock();
        if st.buf.len() < SOFT_CAP {
            return true;
        }
        st.loop_waiting = true;
        false
    }

    /// Adds complete lines to be written.
    pub fn push(&self, lines: &[u8]) {
        if lines.is_empty() {
            return;
        }
        if self.0.direct.load(Ordering::Relaxed) {
            let _ = io::stderr().lock().write_all(lines);
            return;
        }
        let mut st = self.0.lock();
        if st.buf.len() >= HARD_CAP {
            st.dropped += 1;
            return;
        }
        st.buf.extend_from_slice(lines);
        drop(st);
        self.0.work.notify_one();
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
        self.0.push(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The writer thread: takes the whole buffer at a time and writes it to `out`.
fn write_until_closed(shared: &Shared, mut out: Box<dyn Write + Send>) {
    let mut batch = Vec::new();
    loop {
        let mut st = shared.lock();
        while st.buf.is_empty() && st.dropped == 0 && !st.closing {
            st = shared.work.wait(st).unwrap_or_else(PoisonError::into_inner);
        }
        if st.buf.is_empty() && st.dropped == 0 && st.closing {
            return;
        }
        std::mem::swap(&mut batch, &mut st.buf);
        let dropped = std::mem::take(&mut st.dropped);
        let wake = std::mem::take(&mut st.loop_waiting);
        drop(st);
        if wake {
            if let Some(waker) = shared.waker.get() {
                let _ = waker.wake();
            }
        }
        // A failed write has nowhere to be reported; the lines are dropped, and the loop is
        // never held up by a sink that is gone.
        let _ = out.write_all(&batch);
        if dropped > 0 {
            let _ = writeln!(
                out,
                "greenroom: {dropped} log records of the admin were dropped: the log sink did not keep up"
            );
        }
        batch.clear();
    }
}

impl SinkThread {
    /// Writes what is buffered and stops the writer, waiting at most `timeout` (a stuck
    /// stderr must not keep the admin from exiting).
    pub fn finish(self, timeout: Duration) {
        self.shared.lock().closing = true;
        self.shared.work.notify_one();
        if let Some(done) = self.done {
            let _ = done.recv_timeout(timeout);
        }
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
        LogPipe {
            rx,
            attribution: format!(" actor={actor} actor_type={type_name} pid={pid} incarnation={incarnation}"),
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

    /// An output that holds every write until the test lets it go, like a stuck terminal.
    struct Gate {
        open: Arc<(Mutex<bool>, Condvar)>,
        written: Arc<Mutex<Vec<u8>>>,
    }

    impl Write for Gate {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            let (open, cv) = &*self.open;
            let mut is_open = open.lock().unwrap();
            while !*is_open {
                is_open = cv.wait(is_open).unwrap();
            }
            self.written.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_stuck_output_fills_the_sink_and_the_loop_is_woken_when_it_moves() {
        let open = Arc::new((Mutex::new(false), Condvar::new()));
        let written = Arc::new(Mutex::new(Vec::new()));
        let (sink, thread) = Sink::start_on(Box::new(Gate {
            open: open.clone(),
            written: written.clone(),
        }));
        let mut poll = mio::Poll::new().unwrap();
        let waker_token = mio::Token(7);
        sink.set_waker(mio::Waker::new(poll.registry(), waker_token).unwrap());
        // Pushing never blocks, though nothing is written; past the soft cap there is no
        // room for host lines.
        let line = vec![b'x'; 1023];
        let mut pushed = 0;
        while sink.has_room() {
            sink.push(&[&line[..], b"\n"].concat());
            pushed += 1024;
            assert!(pushed <= 3 * SOFT_CAP, "the sink never filled up");
        }
        // Once the output moves, the writer makes room and wakes the loop.
        *open.0.lock().unwrap() = true;
        open.1.notify_all();
        let mut events = mio::Events::with_capacity(4);
        poll.poll(&mut events, Some(Duration::from_secs(10))).unwrap();
        assert!(events.iter().any(|e| e.token() == waker_token), "the loop was woken");
        assert!(sink.has_room());
        thread.finish(Duration::from_secs(10));
        assert_eq!(written.lock().unwrap().len(), pushed, "every line was written");
    }

    #[test]
    fn reading_a_pipe_forwards_lines_until_end_of_file() {
        let (tx, rx) = stderr_pipe().unwrap();
        let mut pipe = LogPipe::new(rx, Address::local(3), "t::B", 7, 2);
        let sink = Sink::buffer_only();
        let mut tx = std::fs::File::from(tx);
        tx.write_all(b"hello\nbye").unwrap();
        assert_eq!(pipe.read(&sink, READ_BUDGET), PipeRead::Drained);
        drop(tx);
        assert_eq!(pipe.read(&sink, READ_BUDGET), PipeRead::Closed);
        let buffered = String::from_utf8(sink.0.lock().buf.clone()).unwrap();
        assert!(buffered.contains("stderr: hello actor=@3 actor_type=t::B pid=7 incarnation=2"));
        assert!(buffered.contains("stderr: bye actor=@3 actor_type=t::B"));
    }
}
