//! What both message-tag benchmarks measure: the per-message cost of a type's tag when a
//! message is made (`AnyMessage::new`) and when a receiver asks its type (`is`).

use criterion::{black_box, Criterion};
use greenroom::{ActorExitRequest, AnyMessage, Message};
use serde::{Deserialize, Serialize};

/// A small user message (the kind sent ten million times a second).
#[derive(Serialize, Deserialize)]
pub struct Ping {
    pub seq: u64,
}

/// Another user type, for a receiver's `is` that does not match.
#[derive(Serialize, Deserialize)]
pub struct Pong {
    pub seq: u64,
}

/// Benchmarks `M` under `label`: make a message, ask its type (a hit and a miss).
pub fn bench<M: Message>(c: &mut Criterion, label: &str, value: M) {
    c.bench_function(&format!("{label}: AnyMessage::new"), |b| {
        b.iter(|| AnyMessage::new(black_box(&value)).unwrap())
    });
    let msg = AnyMessage::new(&value).unwrap();
    c.bench_function(&format!("{label}: is (hit)"), |b| b.iter(|| black_box(&msg).is::<M>()));
    c.bench_function(&format!("{label}: is (miss)"), |b| {
        b.iter(|| black_box(&msg).is::<Pong>())
    });
    c.bench_function(&format!("{label}: new + is"), |b| {
        b.iter(|| {
            let m = AnyMessage::new(black_box(&value)).unwrap();
            m.is::<Pong>() || m.is::<M>()
        })
    });
}

/// The cases every build measures: a user type and one of the runtime's own.
pub fn user_and_runtime(c: &mut Criterion, label: &str) {
    bench(c, &format!("{label}, user type"), Ping { seq: 7 });
    bench(c, &format!("{label}, runtime type"), ActorExitRequest);
}
