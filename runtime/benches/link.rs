//! What a convention link costs per frame (`cargo bench -p greenroom --bench link`): a
//! frame sealed by one `LinkMachine` and opened by another in memory (the protocol's own
//! cost, which an event loop pays), and a small frame's round trip between two blocking
//! `Link`s over loopback (that plus two syscalls and a thread wake-up each way).

use std::{
    net::{TcpListener, TcpStream},
    time::Instant,
};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use greenroom::convention::{
    link::{Link, LinkMachine},
    ClusterSecret, LinkConfig,
};

fn config() -> LinkConfig {
    LinkConfig::new("bench", ClusterSecret::from_bytes([9; 32])).expect("a valid name")
}

/// Two machines with their handshake done, in memory.
fn established() -> (LinkMachine, LinkMachine) {
    let (config, now) = (config(), Instant::now());
    let mut a = LinkMachine::connecting(&config, "b", now).expect("a connector");
    let mut b = LinkMachine::accepting(&config, "a", now).expect("an acceptor");
    while !a.pending_output().is_empty() || !b.pending_output().is_empty() {
        let n = a.pending_output().len();
        b.feed(a.pending_output(), now).expect("b takes a's handshake");
        a.written(n);
        let n = b.pending_output().len();
        a.feed(b.pending_output(), now).expect("a takes b's handshake");
        b.written(n);
    }
    (a, b)
}

fn machine(c: &mut Criterion) {
    let mut group = c.benchmark_group("link machine: a frame sealed and opened");
    for size in [100usize, 4096, 65_536, 1 << 20] {
        let (mut a, mut b) = established();
        let frame = vec![7u8; size];
        let now = Instant::now();
        group.throughput(Throughput::Bytes(size as u64));
        group.bench_with_input(BenchmarkId::from_parameter(size), &frame, |bench, frame| {
            bench.iter(|| {
                a.send_frame(frame).expect("sealed");
                let n = a.pending_output().len();
                b.feed(a.pending_output(), now).expect("opened");
                a.written(n);
                b.next_frame_ref().map(<[u8]>::len)
            })
        });
    }
    group.finish();
}

fn loopback(c: &mut Criterion) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("a loopback port");
    let addr = listener.local_addr().expect("its address");
    let config = config();
    let echo_config = config.clone();
    let echo = std::thread::spawn(move || {
        let (stream, _) = listener.accept().expect("the bench connects");
        let mut link = Link::accept(stream, &echo_config).expect("a link");
        while let Ok(frame) = link.recv() {
            if link.send(&frame).is_err() {
                return;
            }
        }
    });
    let mut link = Link::connect(TcpStream::connect(addr).expect("connected"), &config).expect("a link");
    let frame = vec![7u8; 100];
    c.bench_function("link over loopback: a 100-byte frame's round trip", |bench| {
        bench.iter(|| {
            link.send(&frame).expect("sent");
            link.recv().expect("echoed")
        })
    });
    drop(link);
    echo.join().expect("the echo thread ends with the link");
}

criterion_group!(benches, machine, loopback);
criterion_main!(benches);
