//! The behaviour every store must have, written once and run against each
//! store: PostgreSQL and the embedded SQLite store.

#[path = "../support/mod.rs"]
mod support;

/// Runs each named `async fn(Env)` of the calling module against every store.
macro_rules! conformance {
    ($($name:ident),* $(,)?) => {
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(crate::support::Env::postgres().await).await;
                }
            )*
        }
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(crate::support::Env::sqlite().await).await;
                }
            )*
        }
    };
}

mod access;
mod availability;
mod bookings;
mod bounds;
mod concurrency;
mod events;
mod listen;
mod query;
mod reserve;
mod resources;
mod update;
