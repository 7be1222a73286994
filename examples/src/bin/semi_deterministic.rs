//! The same actors on both bases, with the same output.
//!
//! The client requests a `Job` of a `Census` coordinator, which creates three `Counter`
//! children, requests each sentence's word count of one of them, and arms a wakeup as its
//! deadline; it answers the job later (`ctx.reply_later`). Each count comes back as a
//! `Response<Count>` message, matched to its sentence by request id; one sentence makes a
//! counter panic twice, so its `Response` says the request was poisoned. When every count is
//! in and the deadline has rung, the census answers the job with its report, sorted. Stopped,
//! it hears each child's `ChildActorExited` before it goes, and says goodbye (a plain
//! message: Thespian's exit is one-way, and the client takes the goodbye with `listen`).
//!
//! On the process base each actor is a process and the answers race each other; on the simple
//! base everything runs in this process in one fixed order on a virtual clock. What the
//! program prints depends on neither: that is what "semi-deterministic" means here.
//!
//! ```text
//! $ cargo run -p greenroom-examples --bin semi_deterministic
//! processes: 3 words  "nothing is lost"
//! ...
//! identical output on both bases
//! ```
//!
//! `--base simple` or `--base processes` runs one base only.

use std::{collections::BTreeMap, time::Duration};

use greenroom::{
    ActorExitRequest, ActorRef, ActorResult, ActorSystem, Address, Base, ChildActorExited, Context, Handle, Later,
    Registry, ReplyTo, Request, RequestError, RequestId, Response, SystemConfig, WakeupMessage,
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

/// The census's answer to a [`Job`]: one line per sentence, sorted.
#[derive(Debug, Serialize, Deserialize)]
struct Report(Vec<String>);

impl Request for Job {
    type Reply = Report;
}

/// One sentence, asked of a [`Counter`]: how many words?
#[derive(Debug, Serialize, Deserialize)]
struct Count(String);

impl Request for Count {
    type Reply = usize;
}

/// The census's last words: how many children it saw exit.
#[derive(Debug, Serialize, Deserialize)]
struct Goodbye(usize);

#[derive(Default)]
struct Counter;

impl Handle<Count> for Counter {
    type Reply = usize;
    fn handle(&mut self, _: &mut Context<'_>, Count(sentence): Count, _: Address) -> ActorResult<usize> {
        if sentence == "PANIC" {
            panic!("a counter cannot count a panic");
        }
        Ok(sentence.split_whitespace().count())
    }
}

greenroom::dispatch!(Counter { Count });

#[derive(Default)]
struct Census {
    /// Who exits with the census: told goodbye once its counters are gone.
    client: Option<Address>,
    /// The answer owed for the job in progress.
    report_to: Option<ReplyTo<Report>>,
    workers: Vec<ActorRef<Counter>>,
    /// The sentence each count in flight asked about, by request id.
    asked: BTreeMap<RequestId, String>,
    deadline_rang: bool,
    lines: Vec<String>,
    exited: usize,
}

impl Census {
    fn report_if_done(&mut self, ctx: &mut Context<'_>) -> ActorResult {
        if self.asked.is_empty() && self.deadline_rang {
            if let Some(report_to) = self.report_to.take() {
                let mut lines = std::mem::take(&mut self.lines);
                lines.sort();
                ctx.answer(report_to, Report(lines))?;
            }
        }
        Ok(())
    }
}

impl Handle<Job> for Census {
    type Reply = Later<Report>;
    fn handle(&mut self, ctx: &mut Context<'_>, job: Job, sender: Address) -> ActorResult<Later<Report>> {
        self.client = Some(sender);
        if self.workers.is_empty() {
            self.workers = (0..3)
                .map(|_| ctx.create_actor::<Counter>())
                .collect::<Result<_, _>>()?;
        }
        for (i, sentence) in job.0.into_iter().enumerate() {
            let worker = self.workers[i % self.workers.len()];
            let id = ctx.request(worker, Count(sentence.clone()), Duration::from_secs(10))?;
            self.asked.insert(id, sentence);
        }
        ctx.wakeup_after(Duration::from_millis(50), "deadline".to_string())?;
        // The report waits for every count and the deadline.
        let (later, report_to) = ctx.reply_later();
        self.report_to = Some(report_to);
        Ok(later)
    }
}

impl Handle<Response<Count>> for Census {
    type Reply = ();
    fn handle(&mut self, ctx: &mut Context<'_>, response: Response<Count>, _sender: Address) -> ActorResult {
        let Some(sentence) = self.asked.remove(&response.id) else {
            return Ok(());
        };
        let line = match response.result {
            Ok(words) => format!("{words} words  {sentence:?}"),
            // The counter panicked on it twice and returned it.
            Err(RequestError::Poisoned { details }) => {
                let why = details.split(" (at ").next().unwrap_or_default();
                format!("failed   {sentence:?}: {why}")
            }
            Err(other) => format!("failed   {sentence:?}: {other}"),
        };
        self.lines.push(line);
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
    Response<Count>,
    WakeupMessage,
    ChildActorExited,
    ActorExitRequest
});

/// Runs the census on `base`; returns what it printed.
fn run(base: Base) -> Result<Vec<String>, greenroom::Error> {
    let system = ActorSystem::start_with(SystemConfig::default().base(base))?;
    let census = system.create_actor::<Census>()?;
    let job = Job(SENTENCES.iter().map(|s| s.to_string()).collect());
    let Report(mut lines) = system.request(census, job, Duration::from_secs(10))?;
    // Thespian's exit, kept as it is: a one-way `ActorExitRequest`, after which the census
    // hears its children exit and says goodbye with a plain message, which `listen` takes.
    system.stop(census)?;
    let exited = loop {
        match system.listen(Duration::from_secs(10))? {
            Some((_, msg)) => match msg.downcast::<Goodbye>() {
                Some(Goodbye(exited)) => break exited,
                None => continue,
            },
            None => {
                return Err(greenroom::Error::Timeout {
                    address: census.address(),
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
