//! Whether the database answers, asked on a connection of its own: a pool
//! whose connections are all busy is a busy database, not one that is down.

use abi::Result;
use sqlx::Connection;
use tokio::sync::Mutex;

use crate::db_error::db_error;

/// A connection kept apart from the pool for health checks, reopened after
/// a failure.
pub(crate) struct Probe<C: Connection> {
    conn: Mutex<Option<C>>,
    options: C::Options,
}

impl<C: Connection> Probe<C> {
    pub fn new(options: C::Options) -> Self {
        Probe {
            conn: Mutex::new(None),
            options,
        }
    }

    /// Checks that the database answers.
    ///
    /// # Errors
    /// When it cannot be reached or does not answer.
    pub async fn check(&self) -> Result<()> {
        let mut slot = self.conn.lock().await;
        let conn = match slot.take() {
            Some(conn) => conn,
            None => C::connect_with(&self.options).await.map_err(db_error)?,
        };
        let mut conn = conn;
        conn.ping().await.map_err(db_error)?;
        *slot = Some(conn);
        Ok(())
    }
}
