//! `greenroom`: the command line over `greenroom_cli`. See the crate docs for the commands
//! and the exit-code contract.

use clap::Parser;

fn main() {
    let cli = greenroom_cli::Cli::parse();
    let code = match greenroom_cli::run(cli) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("greenroom: {e}");
            e.exit_code()
        }
    };
    std::process::exit(code)
}
