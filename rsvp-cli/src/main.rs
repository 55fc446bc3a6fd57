//! `rsvp`: the command-line client of rsvp-server. See `rsvp --help`.
//!
//! # Layout
//! - `cli.rs`: the arguments (clap); `time.rs`: times and durations.
//! - `commands/`: one module per command.
//! - `client.rs`: the connection and calls with deadlines.
//! - `output.rs`: tables and JSON lines; `timeline.rs`: availability
//!   drawn across the terminal; `ids.rs`: ids as tables show
//!   them; `error.rs` and `exit.rs`: what went wrong, in the user's words,
//!   and the exit code for it.

mod cli;
mod client;
mod commands;
mod error;
mod exit;
mod ids;
mod output;
mod time;
mod timeline;

use std::{io::Write, process::ExitCode};

use clap::Parser;

use crate::{
    cli::Cli,
    commands::Context,
    exit::Exit,
    output::{Kind, Rows, View},
    time::Zone,
};

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                Exit::Usage
            } else {
                Exit::Ok
            }
            .into();
        }
    };
    // Typed local times are read in --tz (else the system's zone); times
    // are shown there too, or in UTC with --utc, which changes nothing else.
    let input = cli.global.tz.map_or_else(Zone::system, Zone::Named);
    let credentials = match cli.global.token.as_deref() {
        Some(token) => match client::Credentials::bearer(token) {
            Ok(credentials) => credentials,
            Err(e) => {
                eprintln!("rsvp: {}", e.message);
                return e.exit.into();
            }
        },
        None => client::Credentials::default(),
    };
    let tls = match client::tls(
        cli.global.ca_cert.as_deref(),
        cli.global.cert.as_deref().zip(cli.global.key.as_deref()),
    ) {
        Ok(tls) => tls,
        Err(e) => {
            eprintln!("rsvp: {}", e.message);
            return e.exit.into();
        }
    };
    let cx = Context {
        view: View {
            format: cli.global.output,
            zone: if cli.global.utc { Zone::Utc } else { input },
            width: output::terminal_width(),
            now: chrono::Utc::now(),
        },
        input,
        server: cli.global.server.clone(),
        timeout: cli.global.timeout.0,
        credentials,
        tls,
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("rsvp: cannot start: {e}");
            return Exit::Other.into();
        }
    };
    match runtime.block_on(commands::run(cli, &cx)) {
        Ok(()) => Exit::Ok.into(),
        Err(e) if e.exit == Exit::Ok => Exit::Ok.into(),
        Err(e) => {
            let mut stderr = std::io::stderr();
            // The server writes times as RFC 3339; shown as tables show
            // them. The client's own messages say times as they are typed.
            let message = if e.server_words {
                time::localized(&e.message, &cx.view.zone)
            } else {
                e.message.clone()
            };
            let _ = writeln!(stderr, "rsvp: {message}");
            if let Some(conflict) = &e.conflict {
                if let Some(full) = error::full_line(conflict, cx.view.zone) {
                    let _ = writeln!(stderr, "{full}");
                }
                if !conflict.existing.is_empty() {
                    let mut rows = Rows::new(cx.view, &mut stderr, Kind::Reservations, true);
                    for r in &conflict.existing {
                        let _ = rows.reservation(r);
                    }
                    let _ = rows.finish("");
                }
                if conflict.omitted > 0 {
                    let _ = writeln!(stderr, "and {} more", conflict.omitted);
                }
            }
            e.exit.into()
        }
    }
}
