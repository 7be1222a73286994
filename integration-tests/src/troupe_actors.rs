//! Actor types for the troupe tests: a worker that reports who it is and who it served, and
//! an actor that sends a burst of work in one `receive`.

use std::{path::PathBuf, time::Duration};

use greenroom::{Actor, ActorResult, Address, AnyMessage, Context, PoisonMessage, Troupe};
use serde::{Deserialize, Serialize};

/// Work for a [`PoolWorker`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum PoolJob {
    /// Work `ms` milliseconds (a real sleep: 0 on the simple base), then reply [`JobDone`].
    /// With `notify`, first send this process's pid, as text, to that datagram socket (out
    /// of band, so a test learns which process is on the job while it runs).
    Work { id: u64, ms: u64, notify: Option<PathBuf> },
    /// Mark work in progress and reply [`JobDone`]; the worker stays busy until it gets
    /// [`FinishWork`] (sent to the worker's own address).
    Long { id: u64 },
    /// Panic, on every attempt.
    Panic { id: u64 },
    /// Send `Work { id: sub }` to `troupe` (this worker's own troupe), reply [`JobDone`] for
    /// `id`, and forward the sub-job's answer, when it comes back to this worker, to the
    /// sender.
    Relay { id: u64, sub: u64, troupe: Address },
}

impl PoolJob {
    pub fn work(id: u64, ms: u64) -> Self {
        PoolJob::Work { id, ms, notify: None }
    }
}

/// A [`PoolWorker`]'s answer: which job, which worker, and the sender it saw.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobDone {
    pub id: u64,
    pub worker: Address,
    pub pid: u32,
    pub sender_seen: Address,
}

/// Clears a [`PoolWorker`]'s work-in-progress mark; answered with [`WorkFinished`].
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct FinishWork;

/// A [`PoolWorker`] cleared its work-in-progress mark.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkFinished;

/// A troupe worker, declared as a troupe of at most 3 workers, 1 kept idle, extras stopped
/// after 300 ms idle.
#[derive(Default)]
pub struct PoolWorker {
    /// Where to forward the answer to a relayed sub-job.
    forward_to: Option<Address>,
}

/// The troupe [`PoolWorker`] declares.
pub fn pool() -> Troupe {
    Troupe {
        max_workers: 3,
        idle_workers: 1,
        idle_timeout: Duration::from_millis(300),
        ..Troupe::default()
    }
}

impl Actor for PoolWorker {
    fn receive(&mut self, ctx: &mut Context<'_>, msg: &AnyMessage, sender: Address) -> ActorResult {
        let done = |ctx: &Context<'_>, id| JobDone {
            id,
            worker: ctx.my_address(),
            pid: std::process::id(),
            sender_seen: sender,
        };
        if let Some(job) = msg.downcast::<PoolJob>() {
            match job {
                PoolJob::Work { id, ms, notify } => {
                    if let Some(path) = notify {
                        std::os::unix::net::UnixDatagram::unbound()?
                            .send_to(std::process::id().to_string().as_bytes(), path)?;
                    }
                    std::thread::sleep(Duration::from_millis(ms));
                    ctx.send(sender, done(ctx, id))?;
                }
                PoolJob::Long { id } => {
                    ctx.set_work_in_progress(true)?;
                    ctx.send(sender, done(ctx, id))?;
                }
                PoolJob::Panic { id } => panic!("job {id} fails on purpose"),
                PoolJob::Relay { id, sub, troupe } => {
                    self.forward_to = Some(sender);
                    ctx.send(troupe, PoolJob::work(sub, 0))?;
                    ctx.send(sender, done(ctx, id))?;
                }
            }
        } else if let Some(answer) = msg.downcast::<JobDone>() {
            if let Some(to) = self.forward_to.take() {
                ctx.send(to, answer)?;
            }
        } else if msg.is::<FinishWork>() {
            ctx.set_work_in_progress(false)?;
            ctx.send(sender, WorkFinished)?;
        }
        Ok(())
    }

    fn troupe() -> Option<Troupe> {
        Some(pool())
    }
}

/// Sends `jobs` to `troupe` all in one `receive`, collects the answers, and replies
/// [`BurstDone`] to whoever asked once every job has been answered (or returned).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Burst {
    pub troupe: Address,
    pub jobs: Vec<PoolJob>,
}

/// What a [`Burster`] collected, in arrival order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct BurstDone {
    pub done: Vec<JobDone>,
    pub returned: Vec<PoolJob>,
}

#[derive(Default)]
pub struct Burster {
    asker: Option<Address>,
    expected: usize,
    collected: BurstDone,
}

impl Actor for Burster {
    fn receive(&mut self, ctx: &mut Context<'_>, msg: &AnyMessage, sender: Address) -> ActorResult {
        if let Some(burst) = msg.downcast::<Burst>() {
            self.asker = Some(sender);
            self.expected = burst.jobs.len();
            self.collected = BurstDone::default();
            for job in burst.jobs {
                ctx.send(burst.troupe, job)?;
            }
        } else if let Some(done) = msg.downcast::<JobDone>() {
            self.collected.done.push(done);
        } else if let Some(poison) = msg.downcast::<PoisonMessage>() {
            if let Some(job) = poison.message.downcast::<PoolJob>() {
                self.collected.returned.push(job);
            }
        }
        let answered = self.collected.done.len() + self.collected.returned.len();
        if self.expected > 0 && answered == self.expected {
            self.expected = 0;
            if let Some(asker) = self.asker.take() {
                ctx.send(asker, std::mem::take(&mut self.collected))?;
            }
        }
        Ok(())
    }
}
