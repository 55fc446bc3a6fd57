//! `rsvp-server`: see `rsvp-server --help`.

use std::process::ExitCode;

use clap::Parser;
use reservation_service::cli::Cli;

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
    match runtime.block_on(reservation_service::main(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("rsvp-server: {e:#}");
            ExitCode::FAILURE
        }
    }
}
