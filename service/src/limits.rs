//! Per-principal limits: a token bucket each for reads and writes, and a
//! cap on open streams, by role. Over a limit is `RESOURCE_EXHAUSTED`
//! with the delay to retry after (`google.rpc.RetryInfo`); one principal
//! over its limit does not slow another.

use std::{
    collections::HashMap,
    num::NonZeroU32,
    sync::{Arc, Mutex},
};

use abi::{Caller, Error, Role, UserId};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter, clock::Clock};
use serde::{Deserialize, Serialize};
use tonic::Status;

use crate::errors::status;

/// One role's limits; 0 means unlimited.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RoleLimits {
    /// Reads per second per principal (bursts of twice as many).
    pub reads_per_second: u32,
    /// Writes per second per principal (bursts of twice as many).
    pub writes_per_second: u32,
    /// Query and Listen streams open at once per principal.
    pub streams: u32,
}

impl RoleLimits {
    /// No limits.
    pub const UNLIMITED: RoleLimits = RoleLimits {
        reads_per_second: 0,
        writes_per_second: 0,
        streams: 0,
    };
}

/// The kind of call a bucket counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Class {
    /// Reads: Get, Query, Filter, Listen, Availability, resources...
    Read,
    /// Writes: Reserve, Update, Confirm, Cancel, Book...
    Write,
}

struct Buckets {
    reads: Option<DefaultKeyedRateLimiter<UserId>>,
    writes: Option<DefaultKeyedRateLimiter<UserId>>,
    streams: Option<usize>,
}

fn bucket(per_second: u32) -> Option<DefaultKeyedRateLimiter<UserId>> {
    let rate = NonZeroU32::new(per_second)?;
    let burst = rate.saturating_mul(NonZeroU32::MIN.saturating_add(1));
    Some(RateLimiter::keyed(
        Quota::per_second(rate).allow_burst(burst),
    ))
}

impl Buckets {
    fn new(limits: RoleLimits) -> Self {
        Buckets {
            reads: bucket(limits.reads_per_second),
            writes: bucket(limits.writes_per_second),
            streams: (limits.streams > 0).then_some(limits.streams as usize),
        }
    }
}

/// Every principal's limits, by role.
pub struct Limits {
    admin: Buckets,
    service: Buckets,
    user: Buckets,
    open: Arc<Mutex<HashMap<UserId, usize>>>,
}

impl std::fmt::Debug for Limits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Limits").finish_non_exhaustive()
    }
}

impl Limits {
    /// Limits for each role.
    pub fn new(admin: RoleLimits, service: RoleLimits, user: RoleLimits) -> Self {
        Limits {
            admin: Buckets::new(admin),
            service: Buckets::new(service),
            user: Buckets::new(user),
            open: Arc::default(),
        }
    }

    /// No limits at all.
    pub fn none() -> Self {
        Limits::new(
            RoleLimits::UNLIMITED,
            RoleLimits::UNLIMITED,
            RoleLimits::UNLIMITED,
        )
    }

    fn of(&self, role: Role) -> &Buckets {
        match role {
            Role::Admin => &self.admin,
            Role::Service => &self.service,
            Role::User => &self.user,
        }
    }

    /// Counts one call of `class` against the caller's bucket. A caller
    /// with no name (no authentication) is not limited.
    ///
    /// # Errors
    /// `RESOURCE_EXHAUSTED` with the delay to retry after.
    pub fn admit(&self, caller: &Caller, class: Class) -> Result<(), Status> {
        let Some(principal) = caller.principal() else {
            return Ok(());
        };
        let buckets = self.of(caller.role());
        let (limiter, what) = match class {
            Class::Read => (&buckets.reads, "read"),
            Class::Write => (&buckets.writes, "write"),
        };
        let Some(limiter) = limiter else {
            return Ok(());
        };
        // The delay counts from before the check, so that a thread paused
        // between the refusal and reading the clock never answers "retry
        // after 0".
        let asked = limiter.clock().now();
        limiter.check_key(principal).map_err(|not_until| {
            status(Error::RateLimited {
                what,
                retry_after: not_until.wait_time_from(asked),
            })
        })
    }

    /// A place for one more open stream of the caller, held until the
    /// returned slot is dropped.
    ///
    /// # Errors
    /// `RESOURCE_EXHAUSTED` when the caller has as many open as its role
    /// allows.
    pub fn open_stream(&self, caller: &Caller) -> Result<Option<StreamSlot>, Status> {
        let (Some(principal), Some(most)) = (caller.principal(), self.of(caller.role()).streams)
        else {
            return Ok(None);
        };
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let count = open.entry(principal.clone()).or_default();
        if *count >= most {
            return Err(status(Error::RateLimited {
                what: "stream",
                retry_after: std::time::Duration::from_secs(1),
            }));
        }
        *count += 1;
        Ok(Some(StreamSlot {
            open: self.open.clone(),
            principal: principal.clone(),
        }))
    }

    /// Forgets the buckets of principals that have been idle long enough
    /// for their buckets to be full again, so memory follows the callers
    /// that are active.
    pub fn forget_idle(&self) {
        for buckets in [&self.admin, &self.service, &self.user] {
            for limiter in [&buckets.reads, &buckets.writes].into_iter().flatten() {
                limiter.retain_recent();
                limiter.shrink_to_fit();
            }
        }
    }
}

/// One open stream of a principal; dropping it frees the place.
#[derive(Debug)]
pub struct StreamSlot {
    open: Arc<Mutex<HashMap<UserId, usize>>>,
    principal: UserId,
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(count) = open.get_mut(&self.principal) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                open.remove(&self.principal);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(name: &str) -> Caller {
        Caller::new(UserId::parse(name).unwrap(), Role::User)
    }

    #[test]
    fn a_principal_over_its_limit_waits_and_others_do_not() {
        let limits = Limits::new(
            RoleLimits::UNLIMITED,
            RoleLimits::UNLIMITED,
            RoleLimits {
                reads_per_second: 5,
                writes_per_second: 1,
                streams: 2,
            },
        );
        let ann = user("ann");
        for _ in 0..10 {
            limits
                .admit(&ann, Class::Read)
                .expect("a burst of twice the rate");
        }
        let refused = limits.admit(&ann, Class::Read).unwrap_err();
        assert_eq!(refused.code(), tonic::Code::ResourceExhausted);
        let details = tonic_types::StatusExt::get_error_details(&refused);
        let delay = details
            .retry_info()
            .and_then(|r| r.retry_delay)
            .expect("a delay");
        assert!(
            delay > std::time::Duration::ZERO && delay <= std::time::Duration::from_millis(200)
        );

        limits
            .admit(&user("bob"), Class::Read)
            .expect("bob is not slowed");
        limits
            .admit(&ann, Class::Write)
            .expect("writes have their own bucket");
        let admin = Caller::new(UserId::parse("ops").unwrap(), Role::Admin);
        for _ in 0..100 {
            limits
                .admit(&admin, Class::Write)
                .expect("admins are unlimited");
            limits
                .admit(&Caller::system(), Class::Write)
                .expect("so is no authentication");
        }

        let first = limits.open_stream(&ann).unwrap();
        let second = limits.open_stream(&ann).unwrap();
        assert!(first.is_some() && second.is_some());
        assert!(limits.open_stream(&ann).is_err(), "a third is refused");
        drop(first);
        assert!(
            limits.open_stream(&ann).unwrap().is_some(),
            "a closed one frees a place"
        );
        assert!(
            limits.open_stream(&admin).unwrap().is_none(),
            "admins are not counted"
        );
    }
}
