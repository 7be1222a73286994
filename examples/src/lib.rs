//! What the example programs share: choosing the base from the command line, and the actor
//! types of the CLI walk-through ([`demo`]).
//!
//! Every example that makes sense on both bases takes `--base processes` (the default) or
//! `--base simple`; nothing else in the program changes.

pub mod demo;

use greenroom::Base;

/// The base named by `--base` in this program's arguments: [`Base::Processes`] unless
/// `--base simple` is given. An unknown name exits with status 2 and says what is accepted.
pub fn base_from_args() -> Base {
    let args: Vec<String> = std::env::args().collect();
    match args.iter().position(|a| a == "--base").map(|i| args.get(i + 1)) {
        None => Base::Processes,
        Some(Some(name)) if name == "processes" => Base::Processes,
        Some(Some(name)) if name == "simple" => Base::Simple,
        Some(other) => {
            eprintln!("--base takes `processes` or `simple`, not {other:?}");
            std::process::exit(2)
        }
    }
}
