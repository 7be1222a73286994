//! The cost of message tags in a program that declares none (`cargo bench -p greenroom
//! --bench message_tags`): it must stay that of `type_name` and a string compare.

mod common;

use criterion::{criterion_group, criterion_main, Criterion};

fn undeclared(c: &mut Criterion) {
    common::user_and_runtime(c, "no tags declared");
}

criterion_group!(benches, undeclared);
criterion_main!(benches);
