//! The cost of message tags in a program that declares some (`cargo bench -p greenroom
//! --bench message_tags_declared`): a declared type, and an undeclared one that must look
//! past the declarations to its path.

mod common;

use criterion::{criterion_group, criterion_main, Criterion};
use serde::{Deserialize, Serialize};

/// The same shape as `common::Ping`, with no declaration.
#[derive(Serialize, Deserialize)]
struct Plain {
    seq: u64,
}

greenroom::message_tag!(common::Ping = "bench.Ping", common::Pong = "bench.Pong");

fn declared(c: &mut Criterion) {
    common::user_and_runtime(c, "tags declared");
    common::bench(c, "tags declared, undeclared user type", Plain { seq: 7 });
}

criterion_group!(benches, declared);
criterion_main!(benches);
