//! `rsvp-server`: see `rsvp-server --help`.

use std::process::ExitCode;

use clap::Parser;
use rsvp_server::cli::Cli;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("rsvp-server: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(rsvp_server::main(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("rsvp-server: {e:#}");
            ExitCode::FAILURE
        }
    }
}
