//! The same actors on both bases, with the same output.
//!
//! A `Census` coordinator creates three `Counter` children, deals sentences out to them, and
//! arms a wakeup as its deadline. Counters count words and answer; one sentence makes a
//! counter panic twice, so it comes back to the census as a `PoisonMessage`. When every
//! answer is in and the deadline has rung, the census reports to the client, sorted. Asked to
//! exit, it hears each child's `ChildActorExited` before it goes.
//!
//! On the process base each actor is a process and the answers race each other; on the simple
//! base everything runs in this process in one fixed order on a virtual clock. What the
//! program prints depends on neither: that is what "semi-deterministic" means here.
//!
//! ```text
//! $ cargo run -p greenroom-examples --bin semi_deterministic
//! processes: 4 words  "the quick brown fox"
//! ...
//! identical output on both bases
//! ```
//!
//! `--base simple` or `--base processes` runs one base only.

use std::time::Duration;

use greenroom::{
    ActorExitRequest, ActorRef, ActorResult, ActorSystem, Address, Base, ChildActorExited, Context, Handle,
    PoisonMessage, Registry, SystemConfig, WakeupMessage,
};
use serde::{Deserialize, Serialize};

const SENTENCES: [&str; 6] = [
    "the quick brown fox",
    "jumps over the lazy dog",
    "PANIC",
    "actors all the way down",
    "one process each",
    "nothing is lost",
];

/// The client's job for the census: sentences to count.
#[derive(Debug, Serialize, Deserialize)]
struct Job(Vec<String>);

/// A counter's answer.
#[derive(Debug, Serialize, Deserialize)]
struct Counted {
    sentence: String,
    words: usize,
}

/// The census's report to the client: one line per sentence, sorted.
#[derive(Debug, Serialize, Deserialize)]
struct Report(Vec<String>);

/// The census's last words: how many children it saw exit.
#[derive(Debug, Serialize, Deserialize)]
struct Goodbye(usize);

#[derive(Default)]
struct Counter;

impl Handle<String> for Counter {
    type Reply = ();
    fn handle(&mut self, ctx: &mut Context<'_>, sentence: String, sender: Address) -> ActorResult {
        if sentence == "PANIC" {
            panic!("a counter cannot count a panic");
        }
        let words = sentence.split_whitespace().count();
        ctx.send(sender, Counted { sentence, words })?;
        Ok(())
    }
}

greenroom::dispatch!(Counter { String });

#[derive(Default)]
struct Census {
    client: Option<Address>,
    workers: Vec<Address>,
    waiting: usize,
    deadline_rang: bool,
    lines: Vec<String>,
    exited: usize,
}

impl Census {
    fn report_if_done(&mut self, ctx: &mut Context<'_>) -> ActorResult {
        if self.waiting == 0 && self.deadline_rang {
            if let Some(client) = self.client {
                let mut lines = std::mem::take(&mut self.lines);
                lines.sort();
                ctx.send(client, Report(lines))?;
            }
        }
        Ok(())
    }
}

impl Handle<Job> for Census {
    type Reply = ();
    fn handle(&mut self, ctx: &mut Context<'_>, job: Job, sender: Address) -> ActorResult {
        self.client = Some(sender);
        if self.workers.is_empty() {
            self.workers = (0..3)
                .map(|_| ctx.create_actor::<Counter>().map(ActorRef::address))
                .collect::<Result<_, _>>()?;
        }
        for (i, sentence) in job.0.into_iter().enumerate() {
            ctx.send(self.workers[i % self.workers.len()], sentence)?;
            self.waiting += 1;
        }
        ctx.wakeup_after(Duration::from_millis(50), "deadline".to_string())?;
        Ok(())
    }
}

impl Handle<Counted> for Census {
    type Reply = ();
    fn handle(&mut self, ctx: &mut Context<'_>, counted: Counted, _sender: Address) -> ActorResult {
        self.lines
            .push(format!("{} words  {:?}", counted.words, counted.sentence));
        self.waiting -= 1;
        self.report_if_done(ctx)
    }
}

impl Handle<PoisonMessage> for Census {
    type Reply = ();
    fn handle(&mut self, ctx: &mut Context<'_>, poison: PoisonMessage, _sender: Address) -> ActorResult {
        let sentence = poison.message.downcast::<String>().unwrap_or_default();
        let why = poison.details.split(" (at ").next().unwrap_or_default().to_owned();
        self.lines.push(format!("failed   {sentence:?}: {why}"));
        self.waiting -= 1;
        self.report_if_done(ctx)
    }
}

impl Handle<WakeupMessage> for Census {
    type Reply = ();
    fn handle(&mut self, ctx: &mut Context<'_>, _: WakeupMessage, _sender: Address) -> ActorResult {
        self.deadline_rang = true;
        self.report_if_done(ctx)
    }
}

impl Handle<ChildActorExited> for Census {
    type Reply = ();
    fn handle(&mut self, ctx: &mut Context<'_>, _: ChildActorExited, _sender: Address) -> ActorResult {
        self.exited += 1;
        if self.exited == self.workers.len() {
            if let Some(client) = self.client {
                ctx.send(client, Goodbye(self.exited))?;
            }
        }
        Ok(())
    }
}

impl Handle<ActorExitRequest> for Census {
    type Reply = ();
    fn handle(&mut self, _: &mut Context<'_>, _: ActorExitRequest, _sender: Address) -> ActorResult {
        Ok(())
    }
}

greenroom::dispatch!(Census {
    Job,
    Counted,
    PoisonMessage,
    WakeupMessage,
    ChildActorExited,
    ActorExitRequest
});

/// Runs the census on `base`; returns what it printed.
fn run(base: Base) -> Result<Vec<String>, greenroom::Error> {
    let system = ActorSystem::start_with(SystemConfig::default().base(base))?;
    let census = system.create_actor::<Census>()?.address();
    let job = Job(SENTENCES.iter().map(|s| s.to_string()).collect());
    let Report(mut lines) = system.ask(census, job, Duration::from_secs(10))?;
    system.tell(census, ActorExitRequest)?;
    let exited = loop {
        match system.listen(Duration::from_secs(10))? {
            Some((_, msg)) => match msg.downcast::<Goodbye>() {
                Some(Goodbye(exited)) => break exited,
                None => continue,
            },
            None => {
                return Err(greenroom::Error::Timeout {
                    address: census,
                    timeout: Duration::from_secs(10),
                })
            }
        }
    };
    lines.push(format!("the census saw its {exited} counters exit"));
    system.shutdown()?;
    Ok(lines)
}

fn main() -> Result<(), greenroom::Error> {
    // A counter's panic is part of the story: keep the default hook from printing it.
    std::panic::set_hook(Box::new(|_| {}));
    greenroom_host::init(Registry::new().register::<Census>().register::<Counter>());
    let bases = if std::env::args().any(|a| a == "--base") {
        vec![greenroom_examples::base_from_args()]
    } else {
        vec![Base::Processes, Base::Simple]
    };
    let mut outputs = Vec::new();
    for base in bases {
        let lines = run(base)?;
        let name = match base {
            Base::Processes => "processes",
            Base::Simple => "simple",
        };
        for line in &lines {
            println!("{name:>9}: {line}");
        }
        outputs.push(lines);
    }
    if outputs.len() == 2 {
        if outputs[0] == outputs[1] {
            println!("identical output on both bases");
        } else {
            println!("the bases differ");
            std::process::exit(1);
        }
    }
    Ok(())
}
