//! Actors that account for every message of a test that breaks the path between members
//! (`tests/convention_hostile.rs`): each message carries a nonce, a [`Ledger`] records the
//! nonces it processed, a [`DeadLedger`] (the dead-letter handler of the sending system)
//! records those that came back, and a [`Pump`] sends runs of them from inside an actor.
//! So a test can check that every nonce sent was delivered, returned, or both (in doubt),
//! and none delivered twice.

use greenroom::{Actor, ActorResult, Address, AnyMessage, Context};
use serde::{Deserialize, Serialize};

/// A one-way message carrying a nonce: a [`Ledger`] records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Told(pub u64);

/// An ask carrying a nonce: a [`Ledger`] records it and answers [`Receipt`] with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Asked(pub u64);

/// A [`Ledger`]'s answer to [`Asked`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Receipt(pub u64);

/// Ask a [`Ledger`] for the nonces it has processed, in order: answered with `Vec<u64>`.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct LedgerReport;

/// Records the nonce of every [`Told`] and [`Asked`] it processes, duplicates included.
#[derive(Default)]
pub struct Ledger {
    seen: Vec<u64>,
}

impl Actor for Ledger {
    fn receive(&mut self, ctx: &mut Context<'_>, msg: &AnyMessage, _sender: Address) -> ActorResult {
        if let Some(Told(n)) = msg.downcast::<Told>() {
            self.seen.push(n);
        } else if let Some(Asked(n)) = msg.downcast::<Asked>() {
            self.seen.push(n);
            ctx.reply(Receipt(n))?;
        } else if msg.is::<LedgerReport>() {
            ctx.reply(self.seen.clone())?;
        }
        Ok(())
    }
}

/// Ask a [`DeadLedger`] to become its system's dead-letter handler: answered `true`.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct KeepDeadLetters;

/// Ask a [`DeadLedger`] what came back: answered with [`DeadBook`].
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct DeadReport;

/// What a [`DeadLedger`] has received, in order.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeadBook {
    /// Nonces of [`Told`] and [`Asked`] messages that came back to their senders.
    pub returned: Vec<u64>,
    /// Nonces of [`Receipt`]s that never reached the asker (or reached it after it gave up).
    pub receipts: Vec<u64>,
    /// Tags of any other dead letters.
    pub other: Vec<String>,
}

/// A dead-letter handler that records the nonces of what comes back.
#[derive(Default)]
pub struct DeadLedger {
    book: DeadBook,
}

impl Actor for DeadLedger {
    fn receive(&mut self, ctx: &mut Context<'_>, msg: &AnyMessage, _sender: Address) -> ActorResult {
        if msg.is::<KeepDeadLetters>() {
            ctx.handle_dead_letters(true)?;
            ctx.reply(true)?;
        } else if let Some(dead) = msg.downcast::<greenroom::DeadEnvelope>() {
            let m = &dead.message;
            if let Some(Told(n)) = m.downcast::<Told>() {
                self.book.returned.push(n);
            } else if let Some(Asked(n)) = m.downcast::<Asked>() {
                self.book.returned.push(n);
            } else if let Some(Receipt(n)) = m.downcast::<Receipt>() {
                self.book.receipts.push(n);
            } else {
                self.book.other.push(m.tag().to_string());
            }
        } else if msg.is::<DeadReport>() {
            ctx.reply(self.book.clone())?;
        }
        Ok(())
    }
}

/// Asks a [`Pump`] to tell `Told(first)`, …, `Told(first + count - 1)` to `to`, then answer
/// `true`.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct PumpRun {
    pub to: Address,
    pub first: u64,
    pub count: u64,
}

/// Sends runs of nonces from inside an actor (an actor's messages that come back go to the
/// dead-letter path, where a client's failed calls fail instead).
#[derive(Default)]
pub struct Pump;

impl Actor for Pump {
    fn receive(&mut self, ctx: &mut Context<'_>, msg: &AnyMessage, _sender: Address) -> ActorResult {
        if let Some(run) = msg.downcast::<PumpRun>() {
            for n in run.first..run.first + run.count {
                ctx.send(run.to, Told(n))?;
            }
            ctx.reply(true)?;
        }
        Ok(())
    }
}
