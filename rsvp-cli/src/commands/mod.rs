//! One module per command; each turns its arguments into a request, makes
//! the call, and prints the answer.

mod bench;
mod booking;
mod completions;
mod free;
mod listen;
mod query;
mod reserve;
pub(crate) mod resource;
mod single;

use std::time::Duration;

use crate::{
    cli::{Cli, Command},
    client::{self, Client},
    error::CliError,
    output::View,
    time::Zone,
};

/// What every command needs.
pub struct Context {
    /// How results look.
    pub view: View,
    /// The zone typed local times are read in.
    pub input: Zone,
    /// The server's address, for messages.
    pub server: String,
    /// The deadline of each call.
    pub timeout: Duration,
    /// Sent with every call.
    pub credentials: client::Credentials,
    /// TLS for https:// servers.
    pub tls: tonic::transport::ClientTlsConfig,
}

impl Context {
    /// Where to connect, and as whom.
    fn target(&self) -> client::Target {
        client::Target {
            server: self.server.clone(),
            timeout: self.timeout,
            credentials: self.credentials.clone(),
            tls: self.tls.clone(),
        }
    }

    async fn client(&self) -> Result<Client, CliError> {
        client::connect(&self.target()).await
    }
}

/// Runs the command.
///
/// # Errors
/// Whatever failed, with its exit code.
pub async fn run(cli: Cli, cx: &Context) -> Result<(), CliError> {
    let mut out = std::io::stdout();
    match cli.command {
        Command::Completions(args) => completions::run(args, &mut out),
        Command::Bench(args) => bench::run(args, cx, &mut out).await,
        Command::Reserve(args) => reserve::run(args, cx, &mut out).await,
        Command::Book(args) => booking::book(args, cx, &mut out).await,
        Command::Booking(command) => booking::run(command, cx, &mut out).await,
        Command::CheckIn(args) => single::arrive(args, true, cx, &mut out).await,
        Command::CheckOut(args) => single::arrive(args, false, cx, &mut out).await,
        Command::Confirm(args) => single::confirm(args, cx, &mut out).await,
        Command::Cancel(args) => single::cancel(args, cx, &mut out).await,
        Command::Get(args) => single::get(args, cx, &mut out).await,
        Command::Update(args) => single::update(args, cx, &mut out).await,
        Command::Query(args) => query::query(args, cx, &mut out).await,
        Command::List(args) => query::list(args, cx, &mut out).await,
        Command::Listen(args) => listen::run(args, cx, &mut out).await,
        Command::Free(args) => free::run(args, cx, &mut out).await,
        Command::Resource(command) => resource::run(*command, cx, &mut out).await,
        Command::Whoami => single::whoami(cx, &mut out).await,
    }
}
