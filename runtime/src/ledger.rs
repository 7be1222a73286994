//! The delivery ledger: what a host was doing when it died.
//!
//! A sender keeps every message until the receiver acknowledges it as processed, and acks
//! are batched — so after a host dies, its senders hold some messages it had already
//! processed, perhaps one it was processing, and some it never saw. The ledger tells them
//! apart without a syscall per message: it is a small shared-memory file (a memfd the admin
//! creates and hands to each incarnation of the actor as fd 5) that the host writes with
//! plain memory stores as it works, and the admin reads after reaping the host.
//!
//! ```text
//! word 0      magic
//! word 1      busy_sender   endpoint id of the message being processed, 0 when idle
//! word 2      busy_seq      its sequence number on that sender's connection
//! word 3      queued        messages the host had read and not yet processed when it
//!                           began the current one (for `greenroom status`)
//! word 4      troupe_load   a troupe manager's workers | busy << 32 (for `greenroom status`)
//! word 5      troupe_max    a troupe manager's max_workers + 1; 0 for any other actor
//! then SLOTS × { sender: u64, done: u64 }   one per open data connection:
//!             every message of `sender` up to seq `done` has been processed
//! ```
//!
//! Per message the host stores `busy_seq`, `busy_sender` before `receive` and `done`,
//! `busy_sender = 0` after it. A connection that finds no free slot is acknowledged after
//! every message instead, so its sender never holds a processed message.

use std::{
    collections::HashMap,
    io,
    num::NonZeroUsize,
    os::fd::{AsFd, OwnedFd, RawFd},
    ptr::NonNull,
    sync::atomic::{AtomicU64, Ordering},
};

use greenroom_protocol::{ExitCause, Recovery, TroupeLoad};
use nix::sys::{
    memfd::{memfd_create, MemFdCreateFlag},
    mman::{mmap, munmap, MapFlags, ProtFlags},
};

/// The fd number at which a host inherits its ledger.
pub const LEDGER_FD: RawFd = 5;

const MAGIC: u64 = u64::from_le_bytes(*b"GRLEDGR1");
const HEADER_WORDS: usize = 6;
const SLOTS: usize = 4096;
const WORDS: usize = HEADER_WORDS + 2 * SLOTS;
const BYTES: usize = WORDS * 8;

const W_MAGIC: usize = 0;
const W_BUSY_SENDER: usize = 1;
const W_BUSY_SEQ: usize = 2;
const W_QUEUED: usize = 3;
const W_TROUPE_LOAD: usize = 4;
const W_TROUPE_MAX: usize = 5;

/// The admin's handle on one actor's ledger file.
pub struct LedgerFile {
    fd: OwnedFd,
}

/// What one dead incarnation did with each sender's messages.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct LedgerReport {
    done: HashMap<u64, u64>,
    busy: Option<(u64, u64)>,
}

impl LedgerFile {
    /// Creates an empty ledger (close-on-exec; passed to hosts explicitly).
    pub fn create() -> io::Result<Self> {
        let fd = memfd_create(c"greenroom-ledger", MemFdCreateFlag::MFD_CLOEXEC)?;
        nix::unistd::ftruncate(&fd, BYTES as i64)?;
        Ok(LedgerFile { fd })
    }

    /// Zeroes the ledger for a new incarnation.
    pub fn reset(&self) -> io::Result<()> {
        nix::unistd::ftruncate(&self.fd, 0)?;
        nix::unistd::ftruncate(&self.fd, BYTES as i64)?;
        Ok(())
    }

    /// Reads what the last incarnation recorded.
    pub fn read(&self) -> io::Result<LedgerReport> {
        let mut bytes = vec![0u8; BYTES];
        let mut at = 0;
        while at < BYTES {
            let n = nix::sys::uio::pread(&self.fd, &mut bytes[at..], at as i64)?;
            if n == 0 {
                break;
            }
            at += n;
        }
        let word = |i: usize| u64::from_ne_bytes(bytes[i * 8..i * 8 + 8].try_into().unwrap_or([0; 8]));
        let mut report = LedgerReport::default();
        if word(W_MAGIC) != MAGIC {
            // The host never got as far as mapping it: it processed nothing.
            return Ok(report);
        }
        for slot in 0..SLOTS {
            let sender = word(HEADER_WORDS + 2 * slot);
            let done = word(HEADER_WORDS + 2 * slot + 1);
            if sender != 0 && done != 0 {
                let entry = report.done.entry(sender).or_insert(0);
                *entry = (*entry).max(done);
            }
        }
        let busy_sender = word(W_BUSY_SENDER);
        if busy_sender != 0 {
            report.busy = Some((busy_sender, word(W_BUSY_SEQ)));
        }
        Ok(report)
    }
}

impl LedgerFile {
    /// The header words, if a host has mapped the ledger (its magic is set): a cheap peek,
    /// one `pread`, at what the current incarnation is doing.
    fn header(&self) -> io::Result<Option<[u64; HEADER_WORDS]>> {
        let mut bytes = [0u8; HEADER_WORDS * 8];
        let n = nix::sys::uio::pread(&self.fd, &mut bytes, 0)?;
        if n < bytes.len() {
            return Ok(None);
        }
        let mut words = [0u64; HEADER_WORDS];
        for (i, w) in words.iter_mut().enumerate() {
            *w = u64::from_ne_bytes(bytes[i * 8..i * 8 + 8].try_into().unwrap_or([0; 8]));
        }
        Ok((words[W_MAGIC] == MAGIC).then_some(words))
    }

    /// What the host last reported for `greenroom status`, from one read of the header (`None`
    /// if it never mapped the ledger): how many messages it had read and not yet processed
    /// when it began its latest one, and a troupe manager's load (`None` for other actors).
    pub fn reported(&self) -> io::Result<Option<(u64, Option<TroupeLoad>)>> {
        Ok(self.header()?.map(|w| {
            let troupe = (w[W_TROUPE_MAX] != 0).then(|| TroupeLoad {
                workers: w[W_TROUPE_LOAD] as u32,
                busy: (w[W_TROUPE_LOAD] >> 32) as u32,
                max_workers: (w[W_TROUPE_MAX] - 1) as u32,
            });
            (w[W_QUEUED], troupe)
        }))
    }

    /// The message being processed right now, as (sender, seq), if any: for liveness checks.
    pub fn busy(&self) -> io::Result<Option<(u64, u64)>> {
        Ok(self
            .header()?
            .filter(|w| w[W_BUSY_SENDER] != 0)
            .map(|w| (w[W_BUSY_SENDER], w[W_BUSY_SEQ])))
    }
}

impl AsFd for LedgerFile {
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl LedgerReport {
    /// What happened to the messages of endpoint `sender`.
    pub fn recovery_for(&self, sender: u64, cause: ExitCause) -> Recovery {
        let processed_upto = self.done.get(&sender).copied();
        // A message recorded as busy but also as done finished just before the death.
        let in_flight = match self.busy {
            Some((s, seq)) if s == sender && processed_upto.is_none_or(|d| seq > d) => Some(seq),
            _ => None,
        };
        Recovery {
            processed_upto,
            in_flight,
            cause,
        }
    }
}

/// A host's writable view of its ledger.
pub struct Ledger {
    words: NonNull<AtomicU64>,
    /// Released slots, reused first; slots never used yet are handed out from `owners.len()`.
    free: Vec<u32>,
    /// The sender each slot is claimed for (0: free), to refuse stale or foreign writes.
    owners: Vec<u64>,
}

// SAFETY: the mapping is owned by this value and only accessed through atomics.
unsafe impl Send for Ledger {}

impl Ledger {
    /// Maps the ledger file `fd`, which must be a ledger the admin created (a file of exactly
    /// the ledger's size; anything else is refused rather than mapped).
    pub fn map(fd: OwnedFd) -> io::Result<Self> {
        let len = NonZeroUsize::new(BYTES).ok_or(io::ErrorKind::InvalidInput)?;
        let stat = nix::sys::stat::fstat(std::os::fd::AsRawFd::as_raw_fd(&fd))?;
        let is_file = nix::sys::stat::SFlag::from_bits_truncate(stat.st_mode) & nix::sys::stat::SFlag::S_IFMT
            == nix::sys::stat::SFlag::S_IFREG;
        if !is_file || stat.st_size != BYTES as i64 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("fd is not a delivery ledger (a {BYTES}-byte file)"),
            ));
        }
        // SAFETY: a fresh shared mapping of a regular file checked above to be exactly BYTES
        // long (so no access can fault past its end); nothing else in this process aliases
        // it, and all access goes through `AtomicU64` (8-byte aligned: mmap returns
        // page-aligned memory).
        let ptr = unsafe {
            mmap(
                None,
                len,
                ProtFlags::PROT_READ | ProtFlags::PROT_WRITE,
                MapFlags::MAP_SHARED,
                &fd,
                0,
            )?
        };
        let ledger = Ledger {
            words: ptr.cast(),
            free: Vec::new(),
            owners: Vec::new(),
        };
        ledger.word(W_MAGIC).store(MAGIC, Ordering::Release);
        Ok(ledger)
    }

    fn word(&self, i: usize) -> &AtomicU64 {
        assert!(i < WORDS, "ledger word {i} out of range");
        // SAFETY: `i < WORDS` (checked above) and the mapping holds WORDS aligned u64s for
        // our lifetime.
        unsafe { &*self.words.as_ptr().add(i) }
    }

    /// Reserves a slot for a new connection from `sender`; `None` if all are taken.
    pub fn claim(&mut self, sender: u64) -> Option<u32> {
        // Grow into the mapping only as connections arrive: an idle host touches no slots.
        let slot = match self.free.pop() {
            Some(slot) => slot,
            None if self.owners.len() < SLOTS => {
                self.owners.push(0);
                (self.owners.len() - 1) as u32
            }
            None => return None,
        };
        self.owners[slot as usize] = sender;
        self.word(HEADER_WORDS + 2 * slot as usize + 1)
            .store(0, Ordering::Relaxed);
        self.word(HEADER_WORDS + 2 * slot as usize)
            .store(sender, Ordering::Release);
        Some(slot)
    }

    /// Frees a connection's slot (its sender is gone). Unknown or already free slots are
    /// ignored.
    pub fn release(&mut self, slot: u32) {
        match self.owners.get_mut(slot as usize) {
            Some(owner) if *owner != 0 => *owner = 0,
            _ => return,
        }
        self.word(HEADER_WORDS + 2 * slot as usize).store(0, Ordering::Release);
        self.free.push(slot);
    }

    /// Records how many messages wait behind the one about to be processed.
    pub fn set_queued(&self, queued: u64) {
        self.word(W_QUEUED).store(queued, Ordering::Relaxed);
    }

    /// Records a troupe manager's load.
    pub fn set_troupe(&self, load: TroupeLoad) {
        let packed = u64::from(load.workers) | (u64::from(load.busy) << 32);
        self.word(W_TROUPE_LOAD).store(packed, Ordering::Relaxed);
        self.word(W_TROUPE_MAX)
            .store(u64::from(load.max_workers) + 1, Ordering::Relaxed);
    }

    /// Records that message `seq` of `sender` is about to be processed.
    pub fn begin(&self, sender: u64, seq: u64) {
        self.word(W_BUSY_SEQ).store(seq, Ordering::Relaxed);
        self.word(W_BUSY_SENDER).store(sender, Ordering::Release);
    }

    /// Records that the message begun last is done, and that every message of `sender` up to
    /// `done_upto` has been processed. A slot released (and perhaps claimed by another
    /// sender) since the message arrived is left alone.
    pub fn end(&self, slot: Option<u32>, sender: u64, done_upto: u64) {
        if let Some(slot) = slot {
            if self.owners.get(slot as usize) == Some(&sender) {
                self.word(HEADER_WORDS + 2 * slot as usize + 1)
                    .store(done_upto, Ordering::Release);
            }
        }
        self.word(W_BUSY_SENDER).store(0, Ordering::Release);
    }
}

impl Drop for Ledger {
    fn drop(&mut self) {
        // SAFETY: unmapping the mapping created in `map`, which nothing references any more.
        let _ = unsafe { munmap(self.words.cast(), BYTES) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dup(file: &LedgerFile) -> OwnedFd {
        file.fd.try_clone().unwrap()
    }

    #[test]
    fn records_survive_the_writer_and_are_read_back() {
        let file = LedgerFile::create().unwrap();
        {
            let mut ledger = Ledger::map(dup(&file)).unwrap();
            let a = ledger.claim(10).unwrap();
            let b = ledger.claim(20).unwrap();
            for seq in 1..=5 {
                ledger.begin(10, seq);
                ledger.end(Some(a), 10, seq);
            }
            ledger.begin(20, 1);
            ledger.end(Some(b), 20, 1);
            ledger.begin(20, 2); // dies here
        }
        let report = file.read().unwrap();
        let r10 = report.recovery_for(10, ExitCause::Normal);
        assert_eq!((r10.processed_upto, r10.in_flight), (Some(5), None));
        let r20 = report.recovery_for(20, ExitCause::Normal);
        assert_eq!((r20.processed_upto, r20.in_flight), (Some(1), Some(2)));
        let r30 = report.recovery_for(30, ExitCause::Normal);
        assert_eq!((r30.processed_upto, r30.in_flight), (None, None));

        file.reset().unwrap();
        assert_eq!(file.read().unwrap(), LedgerReport::default());
    }

    #[test]
    fn finished_but_not_cleared_is_not_in_flight() {
        let file = LedgerFile::create().unwrap();
        let mut ledger = Ledger::map(dup(&file)).unwrap();
        let a = ledger.claim(7).unwrap();
        ledger.begin(7, 3);
        // `done` written, then death before `busy_sender = 0`.
        ledger
            .word(HEADER_WORDS + 2 * a as usize + 1)
            .store(3, Ordering::Release);
        let r = file.read().unwrap().recovery_for(7, ExitCause::Normal);
        assert_eq!((r.processed_upto, r.in_flight), (Some(3), None));
    }

    #[test]
    fn a_released_slot_is_not_written_for_its_old_sender() {
        let file = LedgerFile::create().unwrap();
        let mut ledger = Ledger::map(dup(&file)).unwrap();
        let a = ledger.claim(10).unwrap();
        ledger.release(a);
        ledger.release(a); // twice: ignored
        let b = ledger.claim(20).unwrap();
        assert_eq!(a, b, "the slot is reused");
        ledger.begin(10, 500);
        ledger.end(Some(a), 10, 500); // a late message of the old connection
        let r = file.read().unwrap().recovery_for(20, ExitCause::Normal);
        assert_eq!(r.processed_upto, None, "sender 20's record is untouched");
        assert!(ledger.claim(30).is_some());
        assert_eq!(ledger.owners.len(), 2, "only the slots used so far exist");
    }

    #[test]
    fn anything_but_a_ledger_is_refused() {
        let file = tempfile::tempfile().unwrap();
        file.set_len(100).unwrap();
        assert!(Ledger::map(OwnedFd::from(file)).is_err());
    }

    #[test]
    fn slots_run_out_and_come_back() {
        let file = LedgerFile::create().unwrap();
        let mut ledger = Ledger::map(dup(&file)).unwrap();
        let slots: Vec<u32> = (0..SLOTS).map(|i| ledger.claim(i as u64 + 1).unwrap()).collect();
        assert!(ledger.claim(99_999).is_none());
        ledger.release(slots[0]);
        assert!(ledger.claim(99_999).is_some());
    }
}
