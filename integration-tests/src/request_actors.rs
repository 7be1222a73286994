//! Actors that answer requests, for `tests/requests.rs`: a [`Calculator`] that answers at
//! once, later, never, or after stray messages; an [`Aggregator`] that requests from other
//! actors without blocking; and [`Peer`]s that request from each other.
//!
//! They are written with typed dispatch, so their tests hold typed references.

use std::time::Duration;

use greenroom::{
    dispatch, ActorRef, ActorResult, Address, Context, Handle, Later, ReplyTo, Request, Response, WakeupMessage,
};
use serde::{Deserialize, Serialize};

/// `a + b`, answered at once.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct Add(pub u64, pub u64);

impl Request for Add {
    type Reply = u64;
}

/// `a + b`, answered after `delay` (a wakeup: the calculator goes on with its mailbox).
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct SlowAdd {
    pub a: u64,
    pub b: u64,
    pub delay: Duration,
}

impl Request for SlowAdd {
    type Reply = u64;
}

/// Sends `strays` plain strings to the requester, then answers `value`.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct StraysThenAnswer {
    pub strays: u32,
    pub value: u64,
}

impl Request for StraysThenAnswer {
    type Reply = u64;
}

/// Panics, every time: comes back as poison.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct Explode;

impl Request for Explode {
    type Reply = u64;
}

/// Not answered until a [`Release`] comes.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct Hold;

impl Request for Hold {
    type Reply = String;
}

/// Answers every held request with this text (a one-way message).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Release(pub String);

/// How many requests are held.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct HeldCount;

impl Request for HeldCount {
    type Reply = usize;
}

/// The wakeup payload of a [`SlowAdd`]: the answer owed.
#[derive(Debug, Serialize, Deserialize)]
struct Due {
    answer: ReplyTo<u64>,
    sum: u64,
}

/// Answers [`Add`], [`SlowAdd`], [`StraysThenAnswer`], [`Explode`] and [`Hold`].
#[derive(Default)]
pub struct Calculator {
    held: Vec<ReplyTo<String>>,
}

impl Handle<Add> for Calculator {
    type Reply = u64;
    fn handle(&mut self, _: &mut Context<'_>, Add(a, b): Add, _: Address) -> ActorResult<u64> {
        Ok(a + b)
    }
}

impl Handle<SlowAdd> for Calculator {
    type Reply = Later<u64>;
    fn handle(&mut self, ctx: &mut Context<'_>, add: SlowAdd, _: Address) -> ActorResult<Later<u64>> {
        let (later, answer) = ctx.reply_later();
        let sum = add.a + add.b;
        ctx.wakeup_after(add.delay, Due { answer, sum })?;
        Ok(later)
    }
}

impl Handle<WakeupMessage> for Calculator {
    type Reply = ();
    fn handle(&mut self, ctx: &mut Context<'_>, wakeup: WakeupMessage, _: Address) -> ActorResult {
        if let Some(due) = wakeup.payload.downcast::<Due>() {
            ctx.answer(due.answer, due.sum)?;
        }
        Ok(())
    }
}

impl Handle<StraysThenAnswer> for Calculator {
    type Reply = u64;
    fn handle(&mut self, ctx: &mut Context<'_>, s: StraysThenAnswer, sender: Address) -> ActorResult<u64> {
        for n in 0..s.strays {
            ctx.send(sender, format!("stray {n}"))?;
        }
        Ok(s.value)
    }
}

impl Handle<Explode> for Calculator {
    type Reply = u64;
    fn handle(&mut self, _: &mut Context<'_>, _: Explode, _: Address) -> ActorResult<u64> {
        panic!("told to explode")
    }
}

impl Handle<Hold> for Calculator {
    type Reply = Later<String>;
    fn handle(&mut self, ctx: &mut Context<'_>, _: Hold, _: Address) -> ActorResult<Later<String>> {
        let (later, answer) = ctx.reply_later();
        self.held.push(answer);
        Ok(later)
    }
}

impl Handle<Release> for Calculator {
    type Reply = ();
    fn handle(&mut self, ctx: &mut Context<'_>, Release(text): Release, _: Address) -> ActorResult {
        for answer in self.held.drain(..) {
            ctx.answer(answer, text.clone())?;
        }
        Ok(())
    }
}

impl Handle<HeldCount> for Calculator {
    type Reply = usize;
    fn handle(&mut self, _: &mut Context<'_>, _: HeldCount, _: Address) -> ActorResult<usize> {
        Ok(self.held.len())
    }
}

dispatch!(Calculator {
    Add,
    SlowAdd,
    StraysThenAnswer,
    Explode,
    Hold,
    Release,
    HeldCount,
    WakeupMessage
});

/// Sums `pairs` by requesting each from `calculators` in turn (all at once, without
/// waiting), and answers the total, or what went wrong with one of the requests.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SumVia {
    pub calculators: Vec<ActorRef<Calculator>>,
    pub pairs: Vec<(u64, u64)>,
    pub timeout: Duration,
}

impl Request for SumVia {
    type Reply = Result<u64, String>;
}

/// Asks `calculator` a [`Hold`] with `timeout` and answers what came of it (its error
/// text once it times out).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HoldVia {
    pub calculator: ActorRef<Calculator>,
    pub timeout: Duration,
}

impl Request for HoldVia {
    type Reply = Result<String, String>;
}

/// One [`SumVia`] in progress.
struct Summing {
    answer: ReplyTo<Result<u64, String>>,
    waiting: usize,
    total: u64,
}

/// Requests from other actors on behalf of its own requesters, never blocking.
#[derive(Default)]
pub struct Aggregator {
    sums: Vec<Summing>,
    /// Which sum each of its requests belongs to.
    parts: std::collections::BTreeMap<greenroom::RequestId, usize>,
    holds: std::collections::BTreeMap<greenroom::RequestId, ReplyTo<Result<String, String>>>,
}

impl Handle<SumVia> for Aggregator {
    type Reply = Later<Result<u64, String>>;
    fn handle(&mut self, ctx: &mut Context<'_>, sum: SumVia, _: Address) -> ActorResult<Self::Reply> {
        let (later, answer) = ctx.reply_later();
        let index = self.sums.len();
        self.sums.push(Summing {
            answer,
            waiting: sum.pairs.len(),
            total: 0,
        });
        for (i, (a, b)) in sum.pairs.into_iter().enumerate() {
            let calculator = sum.calculators[i % sum.calculators.len()];
            let id = ctx.request(calculator, Add(a, b), sum.timeout)?;
            self.parts.insert(id, index);
        }
        Ok(later)
    }
}

impl Handle<Response<Add>> for Aggregator {
    type Reply = ();
    fn handle(&mut self, ctx: &mut Context<'_>, reply: Response<Add>, _: Address) -> ActorResult {
        let Some(index) = self.parts.remove(&reply.id) else {
            return Err(format!("an answer to {}, which this aggregator never asked", reply.id).into());
        };
        let summing = &mut self.sums[index];
        match reply.into_result() {
            Ok(n) => {
                summing.total += n;
                summing.waiting -= 1;
                if summing.waiting == 0 {
                    let answer = summing.answer.clone();
                    ctx.answer(answer, Ok(summing.total))?;
                }
            }
            Err(e) => {
                summing.waiting = usize::MAX; // answered with the first error
                let answer = summing.answer.clone();
                ctx.answer(answer, Err(e.to_string()))?;
            }
        }
        Ok(())
    }
}

impl Handle<HoldVia> for Aggregator {
    type Reply = Later<Result<String, String>>;
    fn handle(&mut self, ctx: &mut Context<'_>, via: HoldVia, _: Address) -> ActorResult<Self::Reply> {
        let (later, answer) = ctx.reply_later();
        let id = ctx.request(via.calculator, Hold, via.timeout)?;
        self.holds.insert(id, answer);
        Ok(later)
    }
}

impl Handle<Response<Hold>> for Aggregator {
    type Reply = ();
    fn handle(&mut self, ctx: &mut Context<'_>, reply: Response<Hold>, _: Address) -> ActorResult {
        if let Some(answer) = self.holds.remove(&reply.id) {
            ctx.answer(answer, reply.into_result().map_err(|e| e.to_string()))?;
        }
        Ok(())
    }
}

dispatch!(Aggregator { SumVia, Response<Add>, HoldVia, Response<Hold> });

/// Passes itself down a chain of peers: each hop requests the next with the rest of the
/// chain and answers one more than what it got back. At the end of the chain the last
/// peer answers 0, or, with `hold_at_end`, never.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Relay {
    pub via: Vec<ActorRef<Peer>>,
    pub hold_at_end: bool,
    pub timeout: Duration,
}

impl Request for Relay {
    type Reply = Result<u32, String>;
}

/// A link of a [`Relay`] chain. Two peers that relay to each other request from each other
/// while their own requests wait.
#[derive(Default)]
pub struct Peer {
    waiting: std::collections::BTreeMap<greenroom::RequestId, ReplyTo<Result<u32, String>>>,
    held: Vec<ReplyTo<Result<u32, String>>>,
}

impl Handle<Relay> for Peer {
    type Reply = Later<Result<u32, String>>;
    fn handle(&mut self, ctx: &mut Context<'_>, mut relay: Relay, _: Address) -> ActorResult<Self::Reply> {
        let (later, answer) = ctx.reply_later();
        if relay.via.is_empty() {
            if relay.hold_at_end {
                self.held.push(answer);
            } else {
                ctx.answer(answer, Ok(0))?;
            }
            return Ok(later);
        }
        let next = relay.via.remove(0);
        let id = ctx.request(next, relay.clone(), relay.timeout)?;
        self.waiting.insert(id, answer);
        Ok(later)
    }
}

impl Handle<Response<Relay>> for Peer {
    type Reply = ();
    fn handle(&mut self, ctx: &mut Context<'_>, reply: Response<Relay>, _: Address) -> ActorResult {
        let Some(answer) = self.waiting.remove(&reply.id) else {
            return Ok(());
        };
        let me = ctx.my_address();
        let result = match reply.into_result() {
            Ok(Ok(n)) => Ok(n + 1),
            Ok(Err(e)) => Err(e),
            Err(e) => Err(format!("{me}: {e}")),
        };
        ctx.answer(answer, result)?;
        Ok(())
    }
}

dispatch!(Peer { Relay, Response<Relay> });

/// Asks `to` a [`Hold`] with `timeout`.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct AskHold {
    pub to: Address,
    pub timeout: Duration,
}

/// Fails: a [`Requester`] made with `OnFailure::Restart` is then restarted.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct Die;

/// Requests [`Hold`]s and fails on every `Response<Hold>` it gets (and on [`Die`]); with a
/// slow child ([`AskHold`] creates a [`Sleeper`]) it stays exiting a while when stopped.
#[derive(Default)]
pub struct Requester {
    watcher: Option<Address>,
}

impl Handle<AskHold> for Requester {
    type Reply = ();
    fn handle(&mut self, ctx: &mut Context<'_>, ask: AskHold, sender: Address) -> ActorResult {
        self.watcher = Some(sender);
        ctx.create_actor::<Sleeper>()?;
        ctx.request(ask.to, Hold, ask.timeout)?;
        Ok(())
    }
}

impl Handle<Response<Hold>> for Requester {
    type Reply = ();
    fn handle(&mut self, ctx: &mut Context<'_>, response: Response<Hold>, _: Address) -> ActorResult {
        if let Some(watcher) = self.watcher {
            ctx.send(watcher, format!("a response reached receive: {:?}", response.result))?;
        }
        Err("the requester fails on its response".into())
    }
}

impl Handle<Die> for Requester {
    type Reply = ();
    fn handle(&mut self, _: &mut Context<'_>, _: Die, _: Address) -> ActorResult {
        Err("told to die".into())
    }
}

dispatch!(Requester { AskHold, Response<Hold>, Die });

/// Takes its time to exit (a child that keeps its parent exiting for a while).
#[derive(Default)]
pub struct Sleeper;

/// Makes a [`Sleeper`] sleep `ms` in its `receive`; `pad` only makes the message big.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Nap {
    pub ms: u64,
    pub pad: Vec<u8>,
}

impl greenroom::Actor for Sleeper {
    fn receive(&mut self, _: &mut Context<'_>, msg: &greenroom::AnyMessage, _: Address) -> ActorResult {
        if let Some(nap) = msg.downcast::<Nap>() {
            std::thread::sleep(Duration::from_millis(nap.ms));
        } else if msg.is::<greenroom::ActorExitRequest>() {
            std::thread::sleep(Duration::from_millis(1500));
        }
        Ok(())
    }
}

/// A request that [`Forgetful`] has a handler for but does not list in its `dispatch!`.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct Forgotten;

impl Request for Forgotten {
    type Reply = u64;
}

/// Has a `Handle<Forgotten>` it never dispatches to: a request for it goes unanswered.
#[derive(Default)]
pub struct Forgetful;

impl Handle<Forgotten> for Forgetful {
    type Reply = u64;
    fn handle(&mut self, _: &mut Context<'_>, _: Forgotten, _: Address) -> ActorResult<u64> {
        Ok(7)
    }
}

impl Handle<Add> for Forgetful {
    type Reply = u64;
    fn handle(&mut self, _: &mut Context<'_>, Add(a, b): Add, _: Address) -> ActorResult<u64> {
        Ok(a + b)
    }
}

dispatch!(Forgetful { Add });
