//! Settings shared by every store.

use std::{sync::Arc, time::Duration};

use chrono::{DateTime, TimeDelta, Utc};

use crate::clock::{Clock, SystemClock};

/// How a store behaves. `StoreOptions::default()` suits most uses.
#[derive(Clone, Debug)]
pub struct StoreOptions {
    /// How long a pending hold lasts when the request does not say; `None`
    /// makes such holds never expire. Default: 30 minutes.
    pub default_hold: Option<TimeDelta>,
    /// Most database connections the store opens. Default: 10.
    pub max_connections: u32,
    /// How long a call waits for a free connection before failing as
    /// busy (retryable). Default: 5 seconds.
    pub acquire_timeout: Duration,
    /// The longest any one SQL statement may run (PostgreSQL), waiting for
    /// locks included, before it fails as unavailable. Default: 30 seconds.
    pub statement_timeout: Option<Duration>,
    /// The longest a statement waits for a lock (PostgreSQL) before it
    /// fails as aborted (retryable). Default: 10 seconds.
    pub lock_timeout: Option<Duration>,
    /// A session left idle inside a transaction this long (PostgreSQL) is
    /// ended by the database, releasing its locks: a partitioned client
    /// cannot hold a resource's lock for hours. Default: 60 seconds.
    pub idle_in_transaction_timeout: Option<Duration>,
    /// How long a database connection may sit silent before the database
    /// probes it (TCP keepalive; PostgreSQL), so a vanished client's
    /// session, and what it holds, goes within a couple of minutes.
    /// Default: 60 seconds.
    pub keepalive: Option<Duration>,
    /// How long changes stay in the change feed for listeners to resume
    /// from. Default: 7 days.
    pub change_retention: TimeDelta,
    /// How many changes a slow listener may fall behind before its stream
    /// ends with a lag error. Default: 4096.
    pub listen_buffer: usize,
    /// Apply migrations when the store opens. Default: true.
    pub migrate: bool,
    /// Where the store reads the time. Default: the system clock.
    pub clock: Arc<dyn Clock>,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            default_hold: Some(TimeDelta::minutes(30)),
            max_connections: 10,
            acquire_timeout: Duration::from_secs(5),
            statement_timeout: Some(Duration::from_secs(30)),
            lock_timeout: Some(Duration::from_secs(10)),
            idle_in_transaction_timeout: Some(Duration::from_secs(60)),
            keepalive: Some(Duration::from_secs(60)),
            change_retention: TimeDelta::days(7),
            listen_buffer: 4096,
            migrate: true,
            clock: Arc::new(SystemClock),
        }
    }
}

impl StoreOptions {
    /// Checks that every setting is within bounds that keep time
    /// arithmetic and buffer sizes safe.
    ///
    /// # Errors
    /// [`abi::Error::InvalidArgument`] naming the setting.
    pub fn check(&self) -> abi::Result<()> {
        let days = |d: i64| TimeDelta::days(d);
        if let Some(hold) = self.default_hold
            && (hold <= TimeDelta::zero() || hold > days(366))
        {
            return Err(abi::Error::invalid(
                "default_hold",
                "must be more than 0 and at most 366 days (None: holds never expire)",
            ));
        }
        if self.change_retention <= TimeDelta::zero() || self.change_retention > days(3660) {
            return Err(abi::Error::invalid(
                "change_retention",
                "must be more than 0 and at most 3660 days",
            ));
        }
        if !(2..=1_000_000).contains(&self.listen_buffer) {
            return Err(abi::Error::invalid(
                "listen_buffer",
                "must be between 2 and 1000000",
            ));
        }
        if self.max_connections == 0 {
            return Err(abi::Error::invalid("max_connections", "must be at least 1"));
        }
        Ok(())
    }

    /// The current time, to the microsecond.
    pub(crate) fn now(&self) -> DateTime<Utc> {
        abi::time::truncate_to_micros(self.clock.now())
    }
}
