//! The store's circuit breaker: once the database is found unreachable (a failed open, or a
//! failed background probe), requests that need it answer 503 at once instead of each waiting
//! for a connection; a probe every [`PROBE_EVERY`] closes the breaker as soon as the database
//! answers again, so the server recovers without a restart.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use sqlx::{AnyConnection, Connection};

/// How often the background probe runs `SELECT 1`.
pub const PROBE_EVERY: Duration = Duration::from_secs(1);
/// The longest a probe may take before it counts as a failure.
pub const PROBE_TIMEOUT: Duration = Duration::from_millis(800);
/// How long a failure keeps the breaker open unless a later probe extends or clears it (so a
/// breaker without a probe, after a failed open, lets a request try again soon).
pub const OPEN_FOR: Duration = Duration::from_secs(3);

/// Open/closed state, shared by the store and its probe task.
#[derive(Debug)]
pub struct Breaker {
    epoch: Instant,
    /// Milliseconds since `epoch` until which the breaker is open (0: closed).
    open_until_ms: AtomicU64,
}

impl Default for Breaker {
    fn default() -> Self {
        Self {
            epoch: Instant::now(),
            open_until_ms: AtomicU64::new(0),
        }
    }
}

impl Breaker {
    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Time left while open; `None` when closed.
    pub fn open_for(&self) -> Option<Duration> {
        let until = self.open_until_ms.load(Ordering::Acquire);
        let now = self.now_ms();
        (until > now).then(|| Duration::from_millis(until - now))
    }

    /// Open (or keep open) for [`OPEN_FOR`]; logs the transition from closed.
    pub fn trip(&self, cause: &dyn std::fmt::Display) {
        let was_open = self.open_for().is_some();
        let until = self.now_ms() + u64::try_from(OPEN_FOR.as_millis()).unwrap_or(3000);
        self.open_until_ms.store(until, Ordering::Release);
        if !was_open {
            tracing::warn!(error = %cause, "database unreachable: failing fast until it answers");
        }
    }

    /// Close; logs the transition from open.
    pub fn close(&self) {
        if self.open_until_ms.swap(0, Ordering::AcqRel) > self.now_ms() {
            tracing::info!("database reachable again");
        }
    }
}

/// Probe the database at `url` every [`PROBE_EVERY`] over one connection of its own (so a
/// pool saturated by slow requests never reads as an outage) until the breaker (owned by the
/// store) is dropped: a failed connect, query or timeout opens the breaker, a success closes it.
pub fn spawn_probe(breaker: Weak<Breaker>, url: String) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(PROBE_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut conn: Option<AnyConnection> = None;
        loop {
            tick.tick().await;
            if breaker.strong_count() == 0 {
                return;
            }
            let outcome = tokio::time::timeout(PROBE_TIMEOUT, probe(&mut conn, &url)).await;
            let Some(breaker) = breaker.upgrade() else {
                return;
            };
            match outcome {
                Ok(Ok(())) => breaker.close(),
                Ok(Err(err)) => {
                    conn = None;
                    breaker.trip(&err);
                }
                Err(_) => {
                    conn = None;
                    breaker.trip(&"probe timed out");
                }
            }
        }
    });
}

/// `SELECT 1` over the probe's connection, connecting first when there is none.
async fn probe(conn: &mut Option<AnyConnection>, url: &str) -> Result<(), sqlx::Error> {
    if conn.is_none() {
        *conn = Some(AnyConnection::connect(url).await?);
    }
    if let Some(c) = conn.as_mut() {
        sqlx::query("SELECT 1").execute(&mut *c).await?;
    }
    Ok(())
}

/// A breaker shared with its probe.
pub fn new() -> Arc<Breaker> {
    Arc::new(Breaker::default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trips_then_closes() {
        let b = Breaker::default();
        assert!(b.open_for().is_none());
        b.trip(&"refused");
        let left = b.open_for().expect("open after a trip");
        assert!(left <= OPEN_FOR && left > OPEN_FOR / 2, "{left:?}");
        b.close();
        assert!(b.open_for().is_none());
    }
}
