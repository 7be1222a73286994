//! Codec micro-benchmarks: the per-message cost of framing, which must stay in the tens of
//! nanoseconds. `cargo bench -p greenroom-protocol`.

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use greenroom_protocol::{frame::decode, Correlation, DataFrame, FrameReader, Payload, DEFAULT_MAX_FRAME};

fn payload() -> Payload {
    Payload {
        tag: "my_app::messages::Greeting".into(),
        bytes: vec![7u8; 64],
    }
}

fn encode(c: &mut Criterion) {
    let payload = payload();
    let mut buf = Vec::with_capacity(4096);
    c.bench_function("encode a 64-byte message frame", |b| {
        b.iter(|| {
            buf.clear();
            DataFrame::encode_message(
                &mut buf,
                black_box(42),
                Correlation::None,
                black_box(&payload),
                DEFAULT_MAX_FRAME,
            )
            .unwrap()
        })
    });
}

fn decode_one(c: &mut Criterion) {
    let mut buf = Vec::new();
    DataFrame::encode_message(&mut buf, 42, Correlation::None, &payload(), DEFAULT_MAX_FRAME).unwrap();
    let body = buf[4..].to_vec();
    c.bench_function("decode a 64-byte message frame", |b| {
        b.iter(|| decode::<DataFrame>(black_box(&body), "data frame").unwrap())
    });
}

fn reassemble(c: &mut Criterion) {
    const FRAMES: u64 = 1000;
    let payload = payload();
    let mut stream = Vec::new();
    for seq in 0..FRAMES {
        DataFrame::encode_message(&mut stream, seq, Correlation::None, &payload, DEFAULT_MAX_FRAME).unwrap();
    }
    let mut group = c.benchmark_group("reassemble");
    group.throughput(Throughput::Elements(FRAMES));
    group.bench_function("1000 back-to-back frames from one buffer", |b| {
        let mut reader = FrameReader::new(DEFAULT_MAX_FRAME);
        b.iter(|| {
            reader.push(black_box(&stream));
            let mut n = 0;
            while let Some(body) = reader.next_frame().unwrap() {
                n += body.len();
            }
            n
        })
    });
    group.finish();
}

criterion_group!(benches, encode, decode_one, reassemble);
criterion_main!(benches);
