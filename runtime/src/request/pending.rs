//! An actor's requests waiting for their answers: the pure core both bases run (events in,
//! messages out), tested here without processes.
//!
//! ```text
//! Context::request ──start──▶ waiting{id → kind, to, due}
//! answer frame Reply(id) ──answer──▶ Response<M>{Ok(value)} to deliver   (not waiting: a dead letter)
//! PoisonMessage Reply(id) ──answer──▶ Response<M>{Err(Poisoned)}
//! message came back ──returned──▶ Response<M>{Err(Gone | Unknown | InDoubt)}
//! clock passes due ──expire──▶ Response<M>{Err(Timeout)}
//! ```
//!
//! The host builds the `Response<M>` message from the answer's bytes without knowing `M`: the
//! request recorded `Response<M>`'s tag and the tag its answer must have, and postcard lays a
//! struct out as its fields one after another, so the answer's bytes are copied in place.

use std::{cmp::Reverse, collections::BinaryHeap, time::Duration};

use greenroom_protocol::{Address, Payload};
use rustc_hash::FxHashMap as HashMap;

use super::{Request, RequestError, RequestId, Response};
use crate::message::{AnyMessage, Message, PoisonMessage, Unanswered};

/// What a request expects, recorded when it is sent: the types behind the `Response<M>` the
/// requester will get.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestKind {
    /// `Response<M>`'s tag: what the requester receives.
    reply_tag: &'static str,
    /// `M::Reply`'s tag: what the answer must be.
    value_tag: &'static str,
    /// `M`'s tag, for logs and errors.
    message_type: &'static str,
}

impl RequestKind {
    pub fn of<M: Request>() -> Self {
        RequestKind {
            reply_tag: Response::<M>::type_tag(),
            value_tag: M::Reply::type_tag(),
            message_type: M::type_tag(),
        }
    }

    pub fn message_type(&self) -> &'static str {
        self.message_type
    }
}

/// A `Response<M>` made up by the requester (a timeout, a message that came back), to
/// deliver to it as if from the actor asked.
#[derive(Debug)]
pub struct MadeUp {
    /// The actor the request went to.
    pub from: Address,
    /// The request it answers.
    pub id: u64,
    pub msg: AnyMessage,
}

struct Waiting<T> {
    kind: RequestKind,
    to: Address,
    due: T,
    timeout: Duration,
}

/// An endpoint's requests waiting for answers, and their deadlines (`T`: the base's clock,
/// an `Instant` or the simple base's virtual `Duration`).
pub struct PendingRequests<T> {
    /// High bits of every id: an actor's incarnation, so that ids never repeat across its
    /// restarts.
    base: u64,
    next: u64,
    waiting: HashMap<u64, Waiting<T>>,
    /// Deadlines, earliest first; entries of requests already answered are skipped, and
    /// dropped all at once when they outnumber the waiting ones (see [`Self::forget`]).
    deadlines: BinaryHeap<Reverse<(T, u64)>>,
}

impl<T: Ord + Copy> PendingRequests<T> {
    /// Requests of an endpoint whose ids start above `incarnation << 40` (an actor's
    /// incarnation; 0 for a client).
    pub fn new(incarnation: u32) -> Self {
        PendingRequests {
            base: u64::from(incarnation) << 40,
            next: 1,
            waiting: HashMap::default(),
            deadlines: BinaryHeap::new(),
        }
    }

    /// A fresh id for a request about to be sent.
    pub fn next_id(&mut self) -> RequestId {
        let id = self.base | self.next;
        self.next += 1;
        RequestId(id)
    }

    /// Records that request `id` went to `to`, to be answered by `due`.
    pub fn start(&mut self, id: RequestId, kind: RequestKind, to: Address, due: T, timeout: Duration) {
        self.waiting.insert(id.0, Waiting { kind, to, due, timeout });
        self.deadlines.push(Reverse((due, id.0)));
    }

    /// An answer to request `id` arrived from `from`: the `Response<M>` to deliver, or the
    /// answer back (`Err`) if nothing waits for it (its requester gave up): a dead letter.
    pub fn answer(&mut self, id: u64, from: Address, msg: AnyMessage) -> Result<AnyMessage, AnyMessage> {
        let Some(waiting) = self.forget(id) else {
            return Err(msg);
        };
        let result = if msg.tag() == waiting.kind.value_tag {
            Ok(msg.payload().bytes.as_slice())
        } else if let Ok(Some(unanswered)) = msg.try_downcast::<Unanswered>() {
            Err(RequestError::Unanswered {
                details: unanswered.details,
            })
        } else if msg.is::<PoisonMessage>() {
            let details = match msg.try_downcast::<PoisonMessage>() {
                Ok(Some(poison)) => poison.details,
                _ => "the receiver returned it (its PoisonMessage did not decode)".to_owned(),
            };
            Err(RequestError::Poisoned { details })
        } else {
            Err(RequestError::UnexpectedReply {
                got: msg.tag().to_owned(),
            })
        };
        Ok(reply_message(&waiting.kind, RequestId(id), from, result))
    }

    /// Request `id`'s message came back unprocessed: the `Response<M>` error to deliver, if it
    /// still waits.
    pub fn returned(&mut self, id: u64, error: RequestError) -> Option<MadeUp> {
        let waiting = self.forget(id)?;
        let msg = reply_message(&waiting.kind, RequestId(id), waiting.to, Err(error));
        Some(MadeUp {
            from: waiting.to,
            id,
            msg,
        })
    }

    /// Forgets request `id` (its message could not be sent).
    pub fn cancel(&mut self, id: RequestId) {
        self.forget(id.0);
    }

    /// Takes request `id` out of those waiting, before its deadline. Its deadline entry
    /// stays in the heap (removing it there would cost a search), to be skipped when it
    /// comes up; but a high request rate with long timeouts would then hold rate × timeout
    /// stale entries, so once they outnumber the waiting ones (by more than a few) the heap
    /// keeps only the entries still waiting. Each pass costs the heap's size and comes only
    /// after as many removals as requests still wait, so it is paid for by them.
    fn forget(&mut self, id: u64) -> Option<Waiting<T>> {
        let waiting = self.waiting.remove(&id)?;
        if self.deadlines.len() > 2 * self.waiting.len() + 32 {
            let still = &self.waiting;
            self.deadlines
                .retain(|&Reverse((due, id))| still.get(&id).is_some_and(|w| w.due == due));
        }
        Some(waiting)
    }

    /// The requests whose deadline is `now` or earlier: their timeout errors, earliest
    /// first.
    pub fn expire(&mut self, now: T) -> Vec<MadeUp> {
        let mut expired = Vec::new();
        while let Some(&Reverse((due, id))) = self.deadlines.peek() {
            if due > now {
                break;
            }
            self.deadlines.pop();
            match self.waiting.get(&id) {
                Some(w) if w.due == due => {}
                _ => continue, // answered already
            }
            let Some(waiting) = self.waiting.remove(&id) else {
                continue;
            };
            tracing::debug!(request = id, to = %waiting.to, message_type = waiting.kind.message_type,
                timeout = ?waiting.timeout, "request timed out");
            let error = RequestError::Timeout { after: waiting.timeout };
            let msg = reply_message(&waiting.kind, RequestId(id), waiting.to, Err(error));
            expired.push(MadeUp {
                from: waiting.to,
                id,
                msg,
            });
        }
        expired
    }

    /// The earliest deadline still waiting, if any (may be one already answered: waking for
    /// it early costs one empty pass).
    pub fn next_due(&mut self) -> Option<T> {
        while let Some(&Reverse((due, id))) = self.deadlines.peek() {
            if self.waiting.get(&id).is_some_and(|w| w.due == due) {
                return Some(due);
            }
            self.deadlines.pop();
        }
        None
    }

    /// Whether no request waits.
    pub fn is_empty(&self) -> bool {
        self.waiting.is_empty()
    }
}

/// `Response<M> { id, from, result }` encoded without knowing `M`: postcard writes a struct as
/// its fields in order and a `Result` as its variant index (0 `Ok`, 1 `Err`, one byte
/// each) followed by the value, so an answer's bytes are `M::Reply`'s encoding as it came.
fn reply_message(kind: &RequestKind, id: RequestId, from: Address, result: Result<&[u8], RequestError>) -> AnyMessage {
    let head = Vec::with_capacity(16 + result.as_ref().map_or(0, |value| value.len()));
    let mut bytes = postcard::to_extend(&(id, from), head).unwrap_or_default();
    match result {
        Ok(value) => {
            bytes.push(0);
            bytes.extend_from_slice(value);
        }
        Err(error) => {
            bytes.push(1);
            match postcard::to_extend(&error, bytes) {
                Ok(b) => bytes = b,
                // A `RequestError` always encodes; keep the type decodable all the same.
                Err(_) => bytes = Vec::new(),
            }
        }
    }
    AnyMessage::from_payload(Payload {
        tag: std::borrow::Cow::Borrowed(kind.reply_tag),
        bytes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::{Deserialize, Serialize};

    #[derive(Debug, Serialize, Deserialize, PartialEq)]
    struct Count(String);
    impl Request for Count {
        type Reply = (u64, String);
    }

    fn at(ms: u64) -> Duration {
        Duration::from_millis(ms)
    }

    #[test]
    fn an_answer_becomes_the_typed_reply_and_only_once() {
        let mut pending = PendingRequests::<Duration>::new(3);
        let id = pending.next_id();
        assert_eq!(id.get() >> 40, 3, "ids carry the incarnation");
        assert_eq!(id.to_string(), "request #3.1");
        let to = Address::local(9);
        pending.start(id, RequestKind::of::<Count>(), to, at(100), at(100));
        let answer = AnyMessage::new(&(7u64, "seven".to_string())).unwrap();
        let reply = pending.answer(id.get(), to, answer.clone()).unwrap();
        let reply: Response<Count> = reply.downcast().unwrap();
        assert_eq!((reply.id, reply.from), (id, to));
        assert_eq!(reply.result, Ok((7, "seven".to_string())));
        // A second answer, or one for an id never sent, waits for no one.
        assert!(pending.answer(id.get(), to, answer.clone()).is_err());
        assert!(pending.answer(12345, to, answer).is_err());
        assert!(
            pending.expire(at(1000)).is_empty(),
            "an answered request never times out"
        );
    }

    #[test]
    fn poison_another_type_a_return_and_the_deadline_are_errors_naming_the_request() {
        let mut pending = PendingRequests::<Duration>::new(1);
        let to = Address::local(4);
        let ids: Vec<RequestId> = (0..4)
            .map(|n| {
                let id = pending.next_id();
                pending.start(id, RequestKind::of::<Count>(), to, at(10 * (n + 1)), at(10));
                id
            })
            .collect();
        let poison = PoisonMessage {
            message: AnyMessage::new(&Count("x".into())).unwrap(),
            details: "receive panicked: boom".into(),
        };
        let reply = pending
            .answer(ids[0].get(), to, AnyMessage::new(&poison).unwrap())
            .unwrap();
        let reply: Response<Count> = reply.downcast().unwrap();
        assert_eq!(
            reply.result,
            Err(RequestError::Poisoned {
                details: "receive panicked: boom".into()
            })
        );
        let reply = pending
            .answer(ids[1].get(), to, AnyMessage::new(&"text".to_string()).unwrap())
            .unwrap();
        let reply: Response<Count> = reply.downcast().unwrap();
        assert!(
            matches!(reply.result, Err(RequestError::UnexpectedReply { ref got }) if got == "alloc::string::String")
        );
        let made_up = pending.returned(ids[2].get(), RequestError::Unknown).unwrap();
        assert_eq!((made_up.from, made_up.id), (to, ids[2].get()));
        assert_eq!(
            made_up.msg.downcast::<Response<Count>>().unwrap().result,
            Err(RequestError::Unknown)
        );
        assert_eq!(pending.next_due(), Some(at(40)));
        assert!(pending.expire(at(39)).is_empty());
        let expired = pending.expire(at(40));
        assert_eq!(expired.len(), 1);
        let reply: Response<Count> = expired[0].msg.downcast().unwrap();
        assert_eq!(reply.id, ids[3]);
        assert_eq!(reply.result, Err(RequestError::Timeout { after: at(10) }));
        let err = reply.into_result().unwrap_err().to_string();
        assert!(
            err.contains(&ids[3].to_string()) && err.contains("Count") && err.contains("@4"),
            "{err}"
        );
        assert!(pending.is_empty());
        assert_eq!(pending.next_due(), None);
    }

    #[test]
    fn requests_answered_long_before_their_deadline_leave_the_heap_bounded() {
        let mut pending = PendingRequests::<Duration>::new(1);
        let to = Address::local(5);
        let kind = RequestKind::of::<Count>();
        // Some requests that stay waiting, with deadlines among the others'.
        let kept: Vec<RequestId> = (0..50)
            .map(|n| {
                let id = pending.next_id();
                pending.start(id, kind, to, at(3_600_000 + n), at(3_600_000));
                id
            })
            .collect();
        let answer = AnyMessage::new(&(1u64, String::new())).unwrap();
        let mut largest = 0;
        // Many more, each with an hour's timeout, each done with at once: answered, come
        // back, or cancelled.
        for n in 0..10_000u64 {
            let id = pending.next_id();
            pending.start(id, kind, to, at(3_600_000 + n % 100), at(3_600_000));
            match n % 3 {
                0 => assert!(pending.answer(id.get(), to, answer.clone()).is_ok()),
                1 => assert!(pending.returned(id.get(), RequestError::Unknown).is_some()),
                _ => pending.cancel(id),
            }
            largest = largest.max(pending.deadlines.len());
        }
        assert!(
            largest <= 2 * kept.len() + 33,
            "the heap held {largest} deadlines for {} waiting requests",
            kept.len()
        );
        // The requests still waiting time out as before, each once, in deadline order.
        assert_eq!(pending.next_due(), Some(at(3_600_000)));
        let expired = pending.expire(at(7_200_000));
        let ids: Vec<u64> = expired.iter().map(|m| m.id).collect();
        assert_eq!(ids, kept.iter().map(|id| id.get()).collect::<Vec<_>>());
        assert!(pending.is_empty());
        assert_eq!(pending.next_due(), None);
    }
}
