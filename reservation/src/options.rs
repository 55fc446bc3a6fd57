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
            change_retention: TimeDelta::days(7),
            listen_buffer: 4096,
            migrate: true,
            clock: Arc::new(SystemClock),
        }
    }
}

impl StoreOptions {
    /// The current time, to the microsecond.
    pub(crate) fn now(&self) -> DateTime<Utc> {
        abi::time::truncate_to_micros(self.clock.now())
    }
}
