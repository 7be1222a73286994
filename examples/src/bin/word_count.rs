//! Requests between actors: a `Reader` splits a text into lines and requests each line's
//! word counts from three supervised `Counter`s, without ever blocking; it adds up the
//! answers (each a `Response<CountWords>` message, matched to its request by id) and answers
//! the program's own request with the most frequent words.
//!
//! ```text
//! $ cargo run -p greenroom-examples --bin word_count
//! 12 lines, 131 words; most frequent: the 26, actor 6, a 5, is 5, and 4; 1 line(s) recounted
//! ```
//!
//! A counter that fails on a line (here, one that contains "boom") has it come back as the
//! `Response`'s error, and the reader counts the line again elsewhere; `--base simple` runs
//! the same actors in this process.

use std::{collections::BTreeMap, time::Duration};

use greenroom::{
    dispatch, ActorRef, ActorResult, ActorSystem, Address, Context, Handle, Later, Registry, ReplyTo, Request,
    RequestId, Response, SystemConfig,
};
use serde::{Deserialize, Serialize};

/// Counts the words of a text, line by line, across the reader's counters.
#[derive(Debug, Serialize, Deserialize)]
struct CountText(String);

/// The answer to [`CountText`].
#[derive(Debug, Serialize, Deserialize)]
struct Summary {
    lines: usize,
    words: u64,
    /// The most frequent words, most frequent first (ties alphabetically).
    top: Vec<(String, u64)>,
    /// Lines a counter failed on and that were counted again by another.
    recounted: usize,
}

impl Request for CountText {
    type Reply = Summary;
}

/// One line to count, asked of a [`Counter`].
#[derive(Debug, Serialize, Deserialize)]
struct CountWords(String);

impl Request for CountWords {
    type Reply = BTreeMap<String, u64>;
}

/// Counts the words of one line at a time.
#[derive(Default)]
struct Counter;

impl Handle<CountWords> for Counter {
    type Reply = BTreeMap<String, u64>;
    fn handle(&mut self, _: &mut Context<'_>, CountWords(line): CountWords, _: Address) -> ActorResult<Self::Reply> {
        if line.contains("boom") {
            return Err("this counter cannot stand the word \"boom\"".into());
        }
        let mut counts = BTreeMap::new();
        for word in line.split_whitespace() {
            let word = word.trim_matches(|c: char| !c.is_alphanumeric()).to_lowercase();
            if !word.is_empty() {
                *counts.entry(word).or_insert(0) += 1;
            }
        }
        Ok(counts)
    }
}

dispatch!(Counter { CountWords });

/// One [`CountText`] in progress.
struct Job {
    answer: ReplyTo<Summary>,
    lines: usize,
    waiting: usize,
    recounted: usize,
    counts: BTreeMap<String, u64>,
}

/// Splits texts into lines and has its counters count them.
#[derive(Default)]
struct Reader {
    counters: Vec<ActorRef<Counter>>,
    next: usize,
    job: Option<Job>,
    /// The line each request in flight asked about, by request id.
    asked: BTreeMap<RequestId, String>,
}

impl Reader {
    /// Requests `line` of the next counter in turn; its answer comes back as a `Response`.
    fn count(&mut self, ctx: &mut Context<'_>, line: String) -> greenroom::Result<()> {
        let counter = self.counters[self.next % self.counters.len()];
        self.next += 1;
        let id = ctx.request(counter, CountWords(line.clone()), Duration::from_secs(10))?;
        self.asked.insert(id, line);
        Ok(())
    }
}

impl Handle<CountText> for Reader {
    type Reply = Later<Summary>;
    fn handle(&mut self, ctx: &mut Context<'_>, CountText(text): CountText, _: Address) -> ActorResult<Self::Reply> {
        if self.counters.is_empty() {
            for _ in 0..3 {
                self.counters.push(ctx.create_actor::<Counter>()?);
            }
        }
        let (later, answer) = ctx.reply_later();
        let lines: Vec<String> = text.lines().map(str::to_owned).collect();
        self.job = Some(Job {
            answer,
            lines: lines.len(),
            waiting: lines.len(),
            recounted: 0,
            counts: BTreeMap::new(),
        });
        for line in lines {
            self.count(ctx, line)?;
        }
        Ok(later)
    }
}

impl Handle<Response<CountWords>> for Reader {
    type Reply = ();
    fn handle(&mut self, ctx: &mut Context<'_>, response: Response<CountWords>, _: Address) -> ActorResult {
        let Some(line) = self.asked.remove(&response.id) else {
            return Ok(());
        };
        match response.result {
            Ok(counts) => {
                let Some(job) = self.job.as_mut() else { return Ok(()) };
                for (word, n) in counts {
                    *job.counts.entry(word).or_insert(0) += n;
                }
                job.waiting -= 1;
                if job.waiting == 0 {
                    let job = self.job.take().expect("the job just counted its last line");
                    let summary = summarise(job.lines, job.recounted, &job.counts);
                    ctx.answer(job.answer, summary)?;
                }
            }
            Err(why) => {
                // The counter failed on it (and goes on): count it again, without the word
                // that upset it, elsewhere.
                eprintln!("a counter failed on {line:?} ({why}); counting it again");
                if let Some(job) = self.job.as_mut() {
                    job.recounted += 1;
                }
                self.count(ctx, line.replace("boom", ""))?;
            }
        }
        Ok(())
    }
}

dispatch!(Reader { CountText, Response<CountWords> });

fn summarise(lines: usize, recounted: usize, counts: &BTreeMap<String, u64>) -> Summary {
    let mut top: Vec<(String, u64)> = counts.iter().map(|(w, n)| (w.clone(), *n)).collect();
    top.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    top.truncate(5);
    Summary {
        lines,
        words: counts.values().sum(),
        top,
        recounted,
    }
}

const TEXT: &str = "\
The actor model treats the actor as the unit of computation.
In response to a message, the actor can make decisions,
create more actors, send more messages, and decide how
to respond to the next message received.
Each actor here is its own process: a crash, boom, stays its own.
The reader asks the counters and the counters answer the reader.
No actor waits for the answer: the answer is a message.
A request gets the answer to the request and nothing else.
The program asks the reader the same way the reader asks the counters.
A counter that fails returns the line, and the line is counted again.
The words are counted, the counts are added, the top is kept.
That is the whole of the actor model the example shows.";

fn main() -> Result<(), greenroom::Error> {
    greenroom_host::init(Registry::new().register::<Reader>().register::<Counter>());

    let base = greenroom_examples::base_from_args();
    let system = ActorSystem::start_with(SystemConfig::default().base(base))?;
    let reader = system.create_actor::<Reader>()?;
    let summary = system.request(reader, CountText(TEXT.to_owned()), Duration::from_secs(30))?;
    let top: Vec<String> = summary.top.iter().map(|(w, n)| format!("{w} {n}")).collect();
    println!(
        "{} lines, {} words; most frequent: {}; {} line(s) recounted",
        summary.lines,
        summary.words,
        top.join(", "),
        summary.recounted
    );
    system.shutdown()
}
