use std::process::ExitCode;

use clap::Parser;

use alignscope::cli::{run, Cli};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        None => alignscope::ui::run_app(),
        Some(command) => run(command),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
