// A request through a typed reference must be answered with the request's reply type.
use greenroom::{dispatch, ActorRef, ActorResult, ActorSystem, Address, Context, Handle, Request};
use serde::{Deserialize, Serialize};
use std::time::Duration;

#[derive(Serialize, Deserialize)]
struct Total;

impl Request for Total {
    type Reply = u64;
}

#[derive(Default)]
struct Counter(u64);

impl Handle<Total> for Counter {
    type Reply = String; // not Total's reply type
    fn handle(&mut self, _: &mut Context<'_>, _: Total, _: Address) -> ActorResult<String> {
        Ok(self.0.to_string())
    }
}

dispatch!(Counter { Total });

fn total(system: &ActorSystem, counter: ActorRef<Counter>) -> greenroom::Result<u64> {
    system.request(counter, Total, Duration::from_secs(1))
}

fn main() {
    let _ = total;
}
