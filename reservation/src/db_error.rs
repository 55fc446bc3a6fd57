//! Classifies database driver errors into rsvp's [`Error`] variants.
//! Driver text is kept as the error's source (logged), never as its message.

use std::{future::Future, time::Duration};

use abi::Error;
use rand::Rng;

/// SQLSTATE of a deadlock.
pub(crate) const DEADLOCK_DETECTED: &str = "40P01";
/// SQLSTATE of a serialization failure.
pub(crate) const SERIALIZATION_FAILURE: &str = "40001";
/// SQLSTATE of an exclusion constraint violation.
pub(crate) const EXCLUSION_VIOLATION: &str = "23P01";
/// SQLSTATE of a check constraint violation (also raised by the capacity
/// trigger).
pub(crate) const CHECK_VIOLATION: &str = "23514";
/// SQLSTATE of a unique constraint violation.
pub(crate) const UNIQUE_VIOLATION: &str = "23505";

/// The SQLSTATE (or SQLite result code) of a database error, if it is one.
pub(crate) fn sqlstate(e: &sqlx::Error) -> Option<String> {
    match e {
        sqlx::Error::Database(db) => db.code().map(|c| c.into_owned()),
        _ => None,
    }
}

/// Maps a driver error to the outcome a caller can act on.
pub(crate) fn db_error(e: sqlx::Error) -> Error {
    use sqlx::Error as E;
    match &e {
        E::PoolTimedOut => Error::Busy(Box::new(e)),
        E::Io(_) | E::Tls(_) | E::PoolClosed | E::WorkerCrashed => Error::Unavailable(Box::new(e)),
        // A connection that ends mid-exchange (a server or a proxy going
        // away while TLS is offered, say) reads as a protocol error.
        E::Protocol(_) => Error::Unavailable(Box::new(e)),
        E::Database(db) if db.try_downcast_ref::<sqlx::sqlite::SqliteError>().is_some() => {
            sqlite_error(e)
        }
        E::Database(_) => {
            let code = sqlstate(&e).unwrap_or_default();
            match code.as_str() {
                DEADLOCK_DETECTED => Error::Aborted {
                    reason: "deadlock between concurrent writes".into(),
                    source: Box::new(e),
                },
                SERIALIZATION_FAILURE | "55P03" => Error::Aborted {
                    reason: "lost a race with concurrent writes".into(),
                    source: Box::new(e),
                },
                // connection exceptions, shutdowns, too many connections,
                // insufficient resources, a read-only (standby) server
                c if c.starts_with("08") || c.starts_with("53") => Error::Unavailable(Box::new(e)),
                // shutdowns, a standby, and a statement past statement_timeout
                "57P01" | "57P02" | "57P03" | "25006" | "57014" => Error::Unavailable(Box::new(e)),
                _ => Error::Internal(Box::new(e)),
            }
        }
        _ => Error::Internal(Box::new(e)),
    }
}

/// An error SQLite reported, by its primary result code (the low byte of
/// the extended one).
fn sqlite_error(e: sqlx::Error) -> Error {
    let code = sqlstate(&e)
        .and_then(|c| c.parse::<i64>().ok())
        .unwrap_or_default();
    match code & 0xff {
        // SQLITE_BUSY, SQLITE_LOCKED: locked past the busy timeout.
        5 | 6 => Error::Aborted {
            reason: "the database stayed locked".into(),
            source: Box::new(e),
        },
        // SQLITE_READONLY, SQLITE_IOERR, SQLITE_FULL, SQLITE_CANTOPEN: the
        // file cannot be written now (a read-only file, a full disk, a
        // failing device), as a PostgreSQL server that cannot take writes.
        8 | 10 | 13 | 14 => Error::Unavailable(Box::new(e)),
        _ => Error::Internal(Box::new(e)),
    }
}

/// Like [`db_error`] for an operation that took a connection from `pool`.
/// The pool reports both "every connection busy" and "cannot connect" as a
/// timeout; with room left for another connection, it was the second.
pub(crate) fn pool_error<DB: sqlx::Database>(pool: &sqlx::Pool<DB>, e: sqlx::Error) -> Error {
    if matches!(e, sqlx::Error::PoolTimedOut) && pool.size() < pool.options().get_max_connections()
    {
        return Error::Unavailable(Box::new(e));
    }
    db_error(e)
}

/// How many times a write that lost a lock race is tried in all.
const ATTEMPTS: u32 = 6;

/// Runs `op` again (after a short random pause) while it fails with
/// [`Error::Aborted`], up to a bound; then returns the last error.
pub(crate) async fn retry_aborted<T, F, Fut>(mut op: F) -> Result<T, Error>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, Error>>,
{
    let mut attempt = 1;
    loop {
        match op().await {
            Err(Error::Aborted { reason, source }) if attempt < ATTEMPTS => {
                tracing::debug!(attempt, %reason, error = %source, "retrying write");
                let cap = 2u64 << attempt; // 4, 8, 16, 32, 64 ms
                let pause = rand::rng().random_range(1..=cap);
                tokio::time::sleep(Duration::from_millis(pause)).await;
                attempt += 1;
            }
            other => return other,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    fn aborted() -> Error {
        Error::Aborted {
            reason: "deadlock".into(),
            source: "40P01".into(),
        }
    }

    #[tokio::test]
    async fn lock_races_are_retried_a_bounded_number_of_times() {
        let calls = AtomicU32::new(0);
        let result: Result<(), Error> = retry_aborted(|| async {
            calls.fetch_add(1, Ordering::Relaxed);
            Err(aborted())
        })
        .await;
        assert!(matches!(result, Err(Error::Aborted { .. })));
        assert_eq!(calls.load(Ordering::Relaxed), ATTEMPTS);
    }

    #[tokio::test]
    async fn a_won_retry_returns_its_result_and_other_errors_are_not_retried() {
        let calls = AtomicU32::new(0);
        let result = retry_aborted(|| async {
            match calls.fetch_add(1, Ordering::Relaxed) {
                0 | 1 => Err(aborted()),
                n => Ok(n),
            }
        })
        .await;
        assert_eq!(result.unwrap(), 2);

        let calls = AtomicU32::new(0);
        let result: Result<(), Error> = retry_aborted(|| async {
            calls.fetch_add(1, Ordering::Relaxed);
            Err(Error::FailedPrecondition("no".into()))
        })
        .await;
        assert!(matches!(result, Err(Error::FailedPrecondition(_))));
        assert_eq!(calls.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn driver_errors_map_to_actionable_outcomes() {
        let io = sqlx::Error::Io(std::io::Error::from(std::io::ErrorKind::ConnectionRefused));
        assert!(matches!(db_error(io), Error::Unavailable(_)));
        assert!(matches!(
            db_error(sqlx::Error::PoolTimedOut),
            Error::Busy(_)
        ));
        assert!(matches!(
            db_error(sqlx::Error::RowNotFound),
            Error::Internal(_)
        ));
        let cut = sqlx::Error::Protocol("unexpected response from SSLRequest: 0x00".into());
        assert!(matches!(db_error(cut), Error::Unavailable(_)));
    }
}
