// A typed reference only takes the message types its actor handles.
use greenroom::{dispatch, ActorRef, ActorResult, ActorSystem, Address, Context, Handle, Request};
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize)]
struct Add(u64);

#[derive(Serialize, Deserialize)]
struct Total;

impl Request for Total {
    type Reply = u64;
}

#[derive(Default)]
struct Counter(u64);

impl Handle<Add> for Counter {
    type Reply = ();
    fn handle(&mut self, _: &mut Context<'_>, Add(n): Add, _: Address) -> ActorResult {
        self.0 += n;
        Ok(())
    }
}

impl Handle<Total> for Counter {
    type Reply = u64;
    fn handle(&mut self, _: &mut Context<'_>, _: Total, _: Address) -> ActorResult<u64> {
        Ok(self.0)
    }
}

dispatch!(Counter { Add, Total });

fn count(system: &ActorSystem, counter: ActorRef<Counter>) -> greenroom::Result<()> {
    system.tell(counter, Add(1))?;
    system.tell(counter, "one".to_string())?;
    Ok(())
}

fn main() {
    let _ = count;
}
