//! The `actionhost` command.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = actionhost::cli::Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("error: could not start the async runtime: {err}");
            return ExitCode::from(1);
        }
    };
    runtime.block_on(cli.run())
}
