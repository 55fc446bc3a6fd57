//! The command line: what the user can type.

use std::path::PathBuf;

use chrono_tz::Tz;
use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::time::{Duration, TimeArg};

/// rsvp: reserve resources for periods of time, from the terminal.
///
/// Talks to rsvp-server over gRPC. Times are RFC 3339 (2026-12-01T10:00:00Z)
/// or local (2026-12-01 10:00, read in --tz or the local zone); durations
/// look like 90m, 2h, 1d.
///
/// Examples:
///   rsvp reserve --resource room-42 --user alice --start '2026-12-01 10:00' --duration 1h
///   rsvp confirm 01a1fee2-20e9-74d9-9d8f-644a0eb6e704
///   rsvp query --resource room-42 --from '2026-12-01' --to '2026-12-02'
///   rsvp listen --resource room-42
///
/// Exit codes: 0 ok, 1 other error, 2 usage error, 3 conflict, 4 not found,
/// 5 invalid argument, 6 server unreachable, 7 not allowed in the
/// reservation's state, 8 refused by the resource's policy, 9 not
/// authenticated or not permitted.
#[derive(Debug, Parser)]
#[command(name = "rsvp", version, verbatim_doc_comment, propagate_version = true)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,

    #[command(subcommand)]
    pub command: Command,
}

/// Options every command takes.
#[derive(Debug, Args)]
pub struct Global {
    /// The server's address.
    #[arg(
        long,
        global = true,
        env = "RSVP_SERVER",
        default_value = "http://127.0.0.1:50051",
        value_name = "URL"
    )]
    pub server: String,

    /// The API token to call with (from `rsvp-server token create`), sent
    /// as authorization: Bearer; needed when the server has auth = token.
    #[arg(
        long,
        global = true,
        env = "RSVP_TOKEN",
        hide_env_values = true,
        value_name = "TOKEN"
    )]
    pub token: Option<String>,

    /// Trust servers whose certificate these authorities (PEM) signed,
    /// for https:// servers; unset: the system's authorities.
    #[arg(long, global = true, env = "RSVP_CA_CERT", value_name = "FILE")]
    pub ca_cert: Option<PathBuf>,

    /// A client certificate (PEM) to present to an https:// server that
    /// asks for one, with --key.
    #[arg(
        long,
        global = true,
        env = "RSVP_CERT",
        value_name = "FILE",
        requires = "key"
    )]
    pub cert: Option<PathBuf>,

    /// The client certificate's private key (PEM).
    #[arg(
        long,
        global = true,
        env = "RSVP_KEY",
        value_name = "FILE",
        requires = "cert"
    )]
    pub key: Option<PathBuf>,

    /// How long to wait for the server to answer a call.
    #[arg(long, global = true, default_value = "10s", value_name = "DURATION")]
    pub timeout: Duration,

    /// How to print results.
    #[arg(long, short = 'o', global = true, value_enum, default_value_t = Format::Table)]
    pub output: Format,

    /// Show times in UTC. Only the display changes: times you type are
    /// still read in --tz (or the system's zone).
    #[arg(long, global = true)]
    pub utc: bool,

    /// The zone times you type (2026-12-01 10:00) are read in, and times
    /// are shown in unless --utc, e.g. Europe/Paris [default: the system's]
    #[arg(long, global = true, env = "RSVP_TZ", value_name = "ZONE")]
    pub tz: Option<Tz>,
}

/// How results are printed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Tables for people.
    Table,
    /// One JSON object per line, full values, for programs.
    Json,
}

/// What to do.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Reserve a resource for a period of time.
    ///
    /// Makes a pending hold (which expires unless confirmed) by default.
    ///
    /// Example:
    ///   rsvp reserve --resource room-42 --user alice --start '2026-12-01 10:00' --duration 90m --note 'design review'
    #[command(verbatim_doc_comment)]
    Reserve(ReserveArgs),

    /// Confirm a pending hold.
    ///
    /// Example: rsvp confirm 01a1fee2-20e9-74d9-9d8f-644a0eb6e704
    Confirm(IdArg),

    /// Cancel a reservation (it is kept, and holds nothing).
    ///
    /// Example: rsvp cancel 01a1fee2-20e9-74d9-9d8f-644a0eb6e704
    Cancel(IdArg),

    /// Show one reservation.
    ///
    /// Example: rsvp get 01a1fee2-20e9-74d9-9d8f-644a0eb6e704
    Get(IdArg),

    /// Change a reservation's note, time or status.
    ///
    /// Example:
    ///   rsvp update 01a1fee2-20e9-74d9-9d8f-644a0eb6e704 --start '2026-12-01 11:00' --end '2026-12-01 12:00'
    #[command(verbatim_doc_comment)]
    Update(UpdateArgs),

    /// Show the reservations that overlap a window, as they stream in.
    ///
    /// Example: rsvp query --resource room-42 --from '2026-12-01' --to '2026-12-02'
    Query(QueryArgs),

    /// Show reservations a page at a time (--all follows every page).
    ///
    /// Example: rsvp list --user alice --page-size 20 --all
    List(ListArgs),

    /// Print changes as they happen, until interrupted.
    ///
    /// Example: rsvp listen --resource room-42 --after 120
    Listen(ListenArgs),

    /// Show what can be booked: a timeline per resource, and the slots a
    /// reservation would get.
    ///
    /// Each cell of a timeline is a stretch of local time (cells start on
    /// the clock: 09:00, 09:30, ...; days at midnight), shaded by the units
    /// free in it: free (every unit, all its open time), partly free (some
    /// units or some of the time taken), held by pending holds (which may
    /// expire), taken, or closed (all of it). Shades count units and
    /// opening hours only; notice, advance and durations are the policy's,
    /// applied by --slot: every slot of that length that a reserve would
    /// accept now, by the resource's rules.
    ///
    /// Examples:
    ///   rsvp free --resource room-1,room-2 --from 2026-12-01 --to 2026-12-02
    ///   rsvp free --resource dr-lee --from 2026-12-07 --to 2026-12-12 --slot 30m
    ///   rsvp free --resource hotel-double --from 2026-12-20 --to 2027-01-03 --quantity 2
    #[command(verbatim_doc_comment)]
    Free(FreeArgs),

    /// Book several resources at once for one user: all or nothing.
    ///
    /// Each --part is RESOURCE,START,END[,QUANTITY]; if any part cannot be
    /// made, none is, and every failing part is named with why.
    ///
    /// Example:
    ///   rsvp book --user ann \
    ///     --part 'flight-42,2026-12-20 08:00,2026-12-20 11:00' \
    ///     --part 'hotel-double,2026-12-20 15:00,2026-12-23 11:00,2'
    #[command(verbatim_doc_comment)]
    Book(BookArgs),

    /// Show, confirm or cancel a booking (all its parts together).
    ///
    /// Examples:
    ///   rsvp booking get 01a1fee2-20e9-74d9-9d8f-644a0eb6e704
    ///   rsvp booking confirm 01a1fee2-20e9-74d9-9d8f-644a0eb6e704
    #[command(verbatim_doc_comment, subcommand)]
    Booking(BookingCommand),

    /// Check a confirmed reservation in (the holder has arrived).
    ///
    /// Example: rsvp check-in 01a1fee2-20e9-74d9-9d8f-644a0eb6e704
    CheckIn(IdArg),

    /// Check a checked-in reservation out; before its end, the rest is
    /// freed.
    ///
    /// Example: rsvp check-out 01a1fee2-20e9-74d9-9d8f-644a0eb6e704
    CheckOut(IdArg),

    /// Register and manage resources: capacity, booking policy, opening
    /// hours.
    ///
    /// Examples:
    ///   rsvp resource create hotel-double --capacity 12 --zone Europe/Paris --label kind=room
    ///   rsvp resource create dr-lee --zone Europe/Paris --open 'mon-fri 09:00-17:00' --grid 15m --min-notice 24h --max-hold 30m
    ///   rsvp resource update hotel-double --capacity 10
    #[command(verbatim_doc_comment, subcommand)]
    Resource(Box<ResourceCommand>),

    /// Load a server with many clients and report throughput and latency.
    ///
    /// Closed loop: each client sends its next call when the last one
    /// answers. Prints a progress line while it runs.
    ///
    /// Example:
    ///   rsvp bench --workload reserve-spread --clients 16 --duration 30s
    #[command(verbatim_doc_comment)]
    Bench(BenchArgs),

    /// Show who the server takes you to be: principal, role, and how you
    /// were authenticated.
    ///
    /// Example: RSVP_TOKEN=rsvp_... rsvp whoami
    Whoami,

    /// Print a shell completion script.
    ///
    /// Example: rsvp completions bash > /etc/bash_completion.d/rsvp
    Completions(CompletionsArgs),
}

/// A reservation's id.
#[derive(Debug, Args)]
pub struct IdArg {
    /// The reservation's id: whole, or its last digits as a table shows
    /// them (…9efdbf210836).
    pub id: String,
}

/// `rsvp reserve`.
#[derive(Debug, Args)]
pub struct ReserveArgs {
    /// What to reserve.
    #[arg(long, short = 'r', value_name = "RESOURCE")]
    pub resource: String,

    /// Who reserves it [default: you, as the server authenticates you]
    #[arg(long, short = 'u', value_name = "USER")]
    pub user: Option<String>,

    /// When it starts.
    #[arg(long, short = 's', value_name = "TIME")]
    pub start: TimeArg,

    /// When it ends (or give --duration).
    #[arg(long, short = 'e', value_name = "TIME", conflicts_with = "duration")]
    pub end: Option<TimeArg>,

    /// How long it lasts (or give --end).
    #[arg(long, short = 'd', value_name = "DURATION")]
    pub duration: Option<Duration>,

    /// A note, at most 4096 bytes.
    #[arg(long, short = 'n', value_name = "TEXT")]
    pub note: Option<String>,

    /// How long the hold lasts before it expires (0s: never); default: the server's.
    #[arg(long, value_name = "DURATION", conflicts_with_all = ["confirm", "block"])]
    pub hold: Option<Duration>,

    /// Book at once instead of making a hold.
    #[arg(long, conflicts_with = "block")]
    pub confirm: bool,

    /// Take the resource out of service for the period.
    #[arg(long)]
    pub block: bool,

    /// An idempotency key: the same command with the same key returns the
    /// first result instead of booking twice [default: a new key, printed
    /// with the result]
    #[arg(long, value_name = "KEY")]
    pub request_id: Option<String>,

    /// Units of the resource to hold (seats, rooms of a type) [default: 1;
    /// with --block, every unit]
    #[arg(long, short = 'q', value_name = "N")]
    pub quantity: Option<u32>,

    /// Check everything (the resource's rules, the capacity) and say what
    /// would be made, without making it.
    #[arg(long)]
    pub dry_run: bool,

    /// Book outside the resource's booking policy (an admin's; never beyond
    /// its capacity).
    #[arg(long)]
    pub override_policy: bool,
}

/// `rsvp book`.
#[derive(Debug, Args)]
pub struct BookArgs {
    /// Who books every part [default: you, as the server authenticates you]
    #[arg(long, short = 'u', value_name = "USER")]
    pub user: Option<String>,

    /// A part: RESOURCE,START,END[,QUANTITY]; 1 to 20 of them (read from
    /// the right: the resource may hold commas).
    #[arg(long, short = 'p', value_name = "PART", required = true)]
    pub part: Vec<String>,

    /// A note on every part.
    #[arg(long, short = 'n', value_name = "TEXT")]
    pub note: Option<String>,

    /// How long the parts are held before they expire (0s: never);
    /// default: the shortest any part's resource allows.
    #[arg(long, value_name = "DURATION", conflicts_with = "confirm")]
    pub hold: Option<Duration>,

    /// Book at once instead of holding.
    #[arg(long)]
    pub confirm: bool,

    /// An idempotency key: the same command with the same key returns the
    /// first booking instead of booking twice [default: a new key, printed
    /// with the result]
    #[arg(long, value_name = "KEY")]
    pub request_id: Option<String>,

    /// Check every part and say what would be made, without making it.
    #[arg(long)]
    pub dry_run: bool,

    /// Book outside the resources' booking policies (an admin's; never
    /// beyond capacity).
    #[arg(long)]
    pub override_policy: bool,
}

/// `rsvp booking`.
#[derive(Debug, Subcommand)]
pub enum BookingCommand {
    /// Show a booking and its parts.
    ///
    /// Example: rsvp booking get 01a1fee2-20e9-74d9-9d8f-644a0eb6e704
    #[command(verbatim_doc_comment)]
    Get(BookingIdArg),
    /// Confirm every pending part (all or nothing).
    ///
    /// Example: rsvp booking confirm 01a1fee2-20e9-74d9-9d8f-644a0eb6e704
    #[command(verbatim_doc_comment)]
    Confirm(BookingIdArg),
    /// Cancel every part not checked in (all or nothing).
    ///
    /// Example: rsvp booking cancel 01a1fee2-20e9-74d9-9d8f-644a0eb6e704
    #[command(verbatim_doc_comment)]
    Cancel(BookingIdArg),
}

/// A booking's id.
#[derive(Debug, Args)]
pub struct BookingIdArg {
    /// The booking's id, whole.
    pub id: String,
}

/// `rsvp update`.
#[derive(Debug, Args)]
pub struct UpdateArgs {
    /// The reservation's id: whole, or its last digits as a table shows
    /// them.
    pub id: String,

    /// A new note.
    #[arg(long, short = 'n', value_name = "TEXT")]
    pub note: Option<String>,

    /// A new start (with --end).
    #[arg(long, short = 's', value_name = "TIME", requires = "end")]
    pub start: Option<TimeArg>,

    /// A new end (with --start).
    #[arg(long, short = 'e', value_name = "TIME", requires = "start")]
    pub end: Option<TimeArg>,

    /// A new status.
    #[arg(long, value_enum, value_name = "STATUS")]
    pub status: Option<NewStatus>,

    /// A new number of units; more are checked against the capacity.
    #[arg(long, short = 'q', value_name = "N")]
    pub quantity: Option<u32>,

    /// Change it outside the resource's booking policy (an admin's).
    #[arg(long)]
    pub override_policy: bool,
}

/// A status an update may ask for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum NewStatus {
    /// Confirm a pending hold.
    Confirmed,
    /// Cancel.
    Cancelled,
    /// Mark a confirmed reservation whose start has passed as a no-show.
    #[value(alias = "no_show")]
    NoShow,
}

/// Any status (as tables and JSON spell it, with `_`, or with `-`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Status {
    /// Holds that have not expired.
    Pending,
    /// Bookings.
    Confirmed,
    /// Out of service.
    Blocked,
    /// Cancelled.
    Cancelled,
    /// Holds that expired.
    Expired,
    /// Arrived (checked in).
    #[value(alias = "checked_in")]
    CheckedIn,
    /// Checked out.
    Completed,
    /// Not checked in by the time the resource was released.
    #[value(alias = "no_show")]
    NoShow,
}

/// The selection of `query` and `list`.
#[derive(Debug, Args)]
pub struct Selection {
    /// Only this user's reservations.
    #[arg(long, short = 'u', value_name = "USER")]
    pub user: Option<String>,

    /// Only this resource's reservations.
    #[arg(long, short = 'r', value_name = "RESOURCE")]
    pub resource: Option<String>,

    /// Only reservations in this status.
    #[arg(long, value_enum, value_name = "STATUS")]
    pub status: Option<Status>,

    /// Only reservations that end after this time.
    #[arg(long, value_name = "TIME")]
    pub from: Option<TimeArg>,

    /// Only reservations that start before this time.
    #[arg(long, value_name = "TIME")]
    pub to: Option<TimeArg>,

    /// Newest start first.
    #[arg(long)]
    pub desc: bool,
}

/// `rsvp query`.
#[derive(Debug, Args)]
pub struct QueryArgs {
    #[command(flatten)]
    pub selection: Selection,
}

/// `rsvp list`.
#[derive(Debug, Args)]
pub struct ListArgs {
    #[command(flatten)]
    pub selection: Selection,

    /// Reservations per page, 1 to 1000 [default: the server's, 100]
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub page_size: Option<u32>,

    /// Continue from this token (printed after a page).
    #[arg(long, value_name = "TOKEN", conflicts_with = "all")]
    pub page_token: Option<String>,

    /// Follow every page to the end.
    #[arg(long)]
    pub all: bool,
}

/// `rsvp listen`.
#[derive(Debug, Args)]
pub struct ListenArgs {
    /// Only changes to this user's reservations.
    #[arg(long, short = 'u', value_name = "USER")]
    pub user: Option<String>,

    /// Only changes to this resource's reservations.
    #[arg(long, short = 'r', value_name = "RESOURCE")]
    pub resource: Option<String>,

    /// First replay every retained change after this id.
    #[arg(long, value_name = "CHANGE_ID")]
    pub after: Option<i64>,
}

/// `rsvp free`.
#[derive(Debug, Args)]
pub struct FreeArgs {
    /// The resources, 1 to 100: comma-separated or repeated (a comma in
    /// an id is written \,).
    #[arg(long, short = 'r', value_name = "RESOURCE", required = true)]
    pub resource: Vec<String>,

    /// Where the window starts [default: now]
    #[arg(long, value_name = "TIME")]
    pub from: Option<TimeArg>,

    /// Where it ends, at most 92 days later [default: a day after --from]
    #[arg(long, value_name = "TIME")]
    pub to: Option<TimeArg>,

    /// Units wanted [default: 1]
    #[arg(long, short = 'q', value_name = "N")]
    pub quantity: Option<u32>,

    /// List the slots of this length a reserve would accept now.
    #[arg(long, value_name = "DURATION")]
    pub slot: Option<Duration>,

    /// Spacing of slot starts [default: the resource's grid, else --slot]
    #[arg(long, value_name = "DURATION", requires = "slot")]
    pub step: Option<Duration>,

    /// Also list the stretches of constant state: free and held units,
    /// open or closed.
    #[arg(long)]
    pub segments: bool,
}

/// `rsvp bench`.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// What the clients do.
    #[arg(long, short = 'w', value_enum)]
    pub workload: Workload,

    /// How many clients run at once.
    #[arg(long, short = 'c', default_value_t = 16)]
    pub clients: usize,

    /// How long to measure.
    #[arg(long, short = 'd', default_value = "30s", value_name = "DURATION")]
    pub duration: Duration,

    /// How many HTTP/2 connections the clients share; default: one each.
    #[arg(long, value_name = "N")]
    pub connections: Option<usize>,

    /// How many resources the spread, query, availability and mixed
    /// workloads pick from (`bench-0` to `bench-<M-1>`).
    #[arg(long, value_name = "M", default_value_t = 100_000)]
    pub resources: u64,

    /// Call over gRPC, or over HTTP/JSON (`/v1/...`, one HTTP/1.1
    /// connection per client) for reserve-spread, reserve-hot,
    /// reserve-registered, availability and book.
    #[arg(long, value_enum, default_value = "grpc")]
    pub protocol: Protocol,
}

/// How `rsvp bench` calls the server.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Protocol {
    /// gRPC over HTTP/2.
    Grpc,
    /// HTTP/JSON over HTTP/1.1, as a web back end calls it.
    Http,
}

/// A benchmark workload.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Workload {
    /// Reserve a random hour of 2027 on a random resource: conflicts rare.
    ReserveSpread,
    /// Every client reserves overlapping hours of one resource: nearly all conflict.
    ReserveHot,
    /// Query a one-week window of a random resource.
    Query,
    /// Get a random existing reservation.
    Get,
    /// Reserve, confirm, cancel, query and get, as an application would.
    Mixed,
    /// One resource of capacity 1,000 (registered anew for the run): every
    /// client reserves one unit of the same hour, until it is sold out and
    /// after.
    ReserveCapacity,
    /// As reserve-spread, on resources registered with capacity 1 and no
    /// policy (the first --resources of them, at most 1,000, registered
    /// before the run).
    ReserveRegistered,
    /// Availability of 10 random resources over a random week, with
    /// 30-minute slots.
    Availability,
    /// Book three parts at once (random hours of 2027 on random
    /// resources, confirmed): conflicts rare.
    Book,
}

/// `rsvp completions`.
#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,

    /// Write here instead of standard output.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn cli_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn reserve_takes_an_end_or_a_duration_but_not_both() {
        let base = [
            "rsvp",
            "reserve",
            "-r",
            "r",
            "-u",
            "u",
            "-s",
            "2026-12-01 10:00",
        ];
        // Neither parses: the command says that either works.
        assert!(Cli::try_parse_from(base).is_ok());
        assert!(Cli::try_parse_from([&base[..], &["-d", "1h"]].concat()).is_ok());
        assert!(Cli::try_parse_from([&base[..], &["-e", "2026-12-01 11:00"]].concat()).is_ok());
        assert!(
            Cli::try_parse_from([&base[..], &["-e", "2026-12-01 11:00", "-d", "1h"]].concat())
                .is_err()
        );
        assert!(
            Cli::try_parse_from([&base[..], &["-d", "1h", "--hold", "5m", "--confirm"]].concat())
                .is_err()
        );
    }
}

/// `rsvp resource`.
#[derive(Debug, Subcommand)]
pub enum ResourceCommand {
    /// Register a resource.
    ///
    /// Examples:
    ///   rsvp resource create hotel-double --capacity 12 --zone Europe/Paris --grid 1d
    ///   rsvp resource create dr-lee --zone Europe/Paris --open 'mon-fri 09:00-17:00' \
    ///     --grid 15m --min-notice 24h --max-hold 30m --auto-release-after 15m
    #[command(verbatim_doc_comment)]
    Create(ResourceSpecArgs),
    /// Show one resource.
    ///
    /// Example: rsvp resource get dr-lee
    #[command(verbatim_doc_comment)]
    Get(ResourceIdArg),
    /// Show registered resources, by id.
    ///
    /// Example: rsvp resource list --label floor=3 --all
    #[command(verbatim_doc_comment)]
    List(ResourceListArgs),
    /// Change the fields given (and those named by --clear); the others
    /// stay as they are.
    ///
    /// Examples:
    ///   rsvp resource update hotel-double --capacity 10
    ///   rsvp resource update dr-lee --clear min-notice --etag 3
    #[command(verbatim_doc_comment)]
    Update(ResourceUpdateArgs),
    /// Delete a resource: it takes no new reservations.
    ///
    /// Example: rsvp resource delete old-room --force
    #[command(verbatim_doc_comment)]
    Delete(ResourceDeleteArgs),
}

/// A resource's id.
#[derive(Debug, Args)]
pub struct ResourceIdArg {
    /// The resource's id (the --resource of its reservations).
    pub id: String,
}

/// What a resource is: each flag given sets that field.
#[derive(Debug, Args)]
pub struct ResourceSpecArgs {
    /// The resource's id (the --resource of its reservations).
    pub id: String,

    /// Units reservations may hold at once (seats, rooms of a type); a new
    /// resource has 1
    #[arg(long, short = 'c', value_name = "N")]
    pub capacity: Option<u32>,

    /// A name for people.
    #[arg(long, value_name = "TEXT")]
    pub name: Option<String>,

    /// The zone of its opening hours and grid, e.g. Europe/Paris; a new
    /// resource's is UTC
    #[arg(long, value_name = "ZONE")]
    pub zone: Option<Tz>,

    /// Weekly opening hours in its zone, repeatable: 'mon-fri 09:00-17:00',
    /// 'sat 10:00-12:30', 'sun 00:00-24:00'.
    #[arg(long, value_name = "DAYS HH:MM-HH:MM")]
    pub open: Vec<String>,

    /// A dated period of opening, repeatable: 'START/END' in --tz, e.g.
    /// '2026-12-05 10:00/2026-12-05 11:30'.
    #[arg(long, value_name = "START/END")]
    pub period: Vec<String>,

    /// Open only within --open and --period (closed when both are empty).
    #[arg(long)]
    pub closed_by_default: bool,

    /// A label to find it by, repeatable: KEY=VALUE.
    #[arg(long, value_name = "KEY=VALUE")]
    pub label: Vec<String>,

    /// A principal who administers it, repeatable.
    #[arg(long, value_name = "PRINCIPAL")]
    pub admin: Vec<String>,

    /// Reservations start at least this long after they are made.
    #[arg(long, value_name = "DURATION")]
    pub min_notice: Option<Duration>,

    /// ... and at most this long after.
    #[arg(long, value_name = "DURATION")]
    pub max_advance: Option<Duration>,

    /// Starts and ends fall on this grid from local midnight (15m, 1h).
    #[arg(long, value_name = "DURATION")]
    pub grid: Option<Duration>,

    /// The shortest reservation.
    #[arg(long, value_name = "DURATION")]
    pub min_duration: Option<Duration>,

    /// The longest reservation.
    #[arg(long, value_name = "DURATION")]
    pub max_duration: Option<Duration>,

    /// Time kept free before each reservation (set-up).
    #[arg(long, value_name = "DURATION")]
    pub buffer_before: Option<Duration>,

    /// Time kept free after each reservation (cleaning).
    #[arg(long, value_name = "DURATION")]
    pub buffer_after: Option<Duration>,

    /// How long a hold lasts when the reservation asks none.
    #[arg(long, value_name = "DURATION")]
    pub default_hold: Option<Duration>,

    /// The longest hold allowed.
    #[arg(long, value_name = "DURATION")]
    pub max_hold: Option<Duration>,

    /// The most units one reservation may take.
    #[arg(long, value_name = "N")]
    pub max_quantity: Option<u32>,

    /// Confirmed reservations are cancelled or moved at least this long
    /// before they start.
    #[arg(long, value_name = "DURATION")]
    pub cancel_notice: Option<Duration>,

    /// Check-in opens this long before the start (at the start when
    /// unset).
    #[arg(long, value_name = "DURATION")]
    pub check_in_opens: Option<Duration>,

    /// A confirmed reservation nobody has checked in this long after its
    /// start is a no-show, and its time is free again.
    #[arg(long, value_name = "DURATION")]
    pub auto_release_after: Option<Duration>,
}

/// `rsvp resource update`.
#[derive(Debug, Args)]
pub struct ResourceUpdateArgs {
    #[command(flatten)]
    pub spec: ResourceSpecArgs,

    /// Only if the resource is still at this etag (as `get` shows it).
    #[arg(long, value_name = "ETAG")]
    pub etag: Option<String>,

    /// Reset a field to its default, repeatable: a field name as --help
    /// shows the flags (capacity, name, open, period, label, admin,
    /// closed-by-default, zone) or a policy rule (min-notice, grid, ...),
    /// or 'policy' for every rule.
    #[arg(long, value_name = "FIELD")]
    pub clear: Vec<String>,
}

/// `rsvp resource list`.
#[derive(Debug, Args)]
pub struct ResourceListArgs {
    /// Only resources with this label, repeatable: KEY=VALUE.
    #[arg(long, value_name = "KEY=VALUE")]
    pub label: Vec<String>,

    /// Deleted resources too.
    #[arg(long)]
    pub deleted: bool,

    /// Resources per page, 1 to 1000 [default: the server's, 100]
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub page_size: Option<u32>,

    /// Continue from this token (printed after a page).
    #[arg(long, value_name = "TOKEN", conflicts_with = "all")]
    pub page_token: Option<String>,

    /// Follow every page to the end.
    #[arg(long)]
    pub all: bool,
}

/// `rsvp resource delete`.
#[derive(Debug, Args)]
pub struct ResourceDeleteArgs {
    /// The resource's id.
    pub id: String,

    /// Also cancel its live reservations that have not ended.
    #[arg(long)]
    pub force: bool,
}
