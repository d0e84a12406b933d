//! What a SQL store does when its database cannot be reached: a time bound on the reads a
//! verification makes, and a circuit breaker with a background probe.
//!
//! Rules (the same for [`SqliteStore`](crate::SqliteStore) and
//! [`PostgresStore`](crate::PostgresStore)):
//!
//! - `find_by_digest`, `get` and `touch` answer within [`OutagePolicy::timeout`] (default
//!   250 ms, [`DEFAULT_OUTAGE_TIMEOUT`]): a read that takes longer is abandoned and fails with
//!   a [`StoreError::Backend`] whose source is [`OutageError::TimedOut`]. Verification then
//!   fails closed with [`VerifyError::Store`](crate::VerifyError::Store) (over HTTP, 503).
//! - A timed-out read, or a failure to reach the database (a connection refused, reset or
//!   closed, a pool that cannot hand out a connection, the server shutting down), marks the
//!   store *down*. While it is down every operation fails at once (well under a millisecond)
//!   with [`OutageError::Down`], without touching the database or its pool, so a request
//!   never queues behind an unreachable database.
//! - While it is down, a background probe checks the database every
//!   [`OutagePolicy::probe_interval`] (default 100 ms), each check bounded by the timeout; the
//!   first check runs at once. When a check succeeds the store is up again: service resumes
//!   within one probe interval plus one connection set-up of the database coming back.
//! - A query error that says nothing about reachability (a constraint, a row keygate cannot
//!   decode) does not mark the store down.
//! - Writes (`insert`, `update`, `delete`) and `list` are not cut short by the timeout (an
//!   abandoned write could still commit); they fail at once while the store is down, and
//!   otherwise within the pool's acquire timeout when no connection can be made.
//!
//! Cached verifications: the verification cache ([`crate::cache`]) keeps serving an entry
//! while the store is down, up to the entry's TTL and never beyond it. This is the staleness
//! bound the cache already accepts when a notification from another instance is lost: during
//! an outage no other instance can commit a change through the database either, and a
//! partition that lets them is exactly the lost-notification case. An expired entry is never
//! served, and an unknown token is never accepted.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use crate::error::{Error, StoreError};

/// The default of [`OutagePolicy::timeout`].
pub const DEFAULT_OUTAGE_TIMEOUT: Duration = Duration::from_millis(250);

/// The default of [`OutagePolicy::probe_interval`].
pub const DEFAULT_PROBE_INTERVAL: Duration = Duration::from_millis(100);

/// How a SQL store behaves when its database cannot be reached (see the [module
/// docs](self)): set with `SqliteStore::with_outage_policy` or
/// `PostgresStore::with_outage_policy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutagePolicy {
    timeout: Duration,
    probe_interval: Duration,
}

impl Default for OutagePolicy {
    fn default() -> Self {
        OutagePolicy {
            timeout: DEFAULT_OUTAGE_TIMEOUT,
            probe_interval: DEFAULT_PROBE_INTERVAL,
        }
    }
}

impl OutagePolicy {
    /// The defaults: a 250 ms timeout, a probe every 100 ms while down.
    pub fn new() -> Self {
        Self::default()
    }

    /// How long a verification read may take before it fails and marks the store down.
    /// Between 1 ms and 60 s; anything else is [`Error::InvalidConfig`].
    pub fn timeout(mut self, timeout: Duration) -> Result<Self, Error> {
        if timeout < Duration::from_millis(1) || timeout > Duration::from_secs(60) {
            return Err(Error::InvalidConfig(
                "outage timeout must be between 1 ms and 60 s",
            ));
        }
        self.timeout = timeout;
        Ok(self)
    }

    /// How often the probe checks a store that is down. Between 1 ms and 60 s; anything
    /// else is [`Error::InvalidConfig`].
    pub fn probe_interval(mut self, interval: Duration) -> Result<Self, Error> {
        if interval < Duration::from_millis(1) || interval > Duration::from_secs(60) {
            return Err(Error::InvalidConfig(
                "probe interval must be between 1 ms and 60 s",
            ));
        }
        self.probe_interval = interval;
        Ok(self)
    }

    /// The timeout of a verification read.
    pub fn time_limit(&self) -> Duration {
        self.timeout
    }

    /// The interval between two probes while down.
    pub fn interval(&self) -> Duration {
        self.probe_interval
    }
}

/// Why a SQL store answered without its database: the source of the
/// [`StoreError::Backend`] it returns (find it with `std::error::Error::source` and
/// `downcast_ref`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum OutageError {
    /// The database did not answer within the policy's timeout.
    #[error("the database did not answer within {0:?}")]
    TimedOut(Duration),
    /// The database is known to be unreachable; a background probe is checking it.
    #[error("the database is unreachable")]
    Down,
}

type ProbeFuture = Pin<Box<dyn Future<Output = Result<(), StoreError>> + Send>>;
type ProbeFn = dyn Fn() -> ProbeFuture + Send + Sync;

/// The circuit breaker a SQL store holds, shared by its clones.
#[derive(Clone)]
pub(crate) struct Breaker {
    state: Arc<State>,
}

struct State {
    policy: OutagePolicy,
    down: AtomicBool,
    probing: AtomicBool,
    probe: Box<ProbeFn>,
}

impl Breaker {
    /// A breaker that checks the database with `probe` while it is down.
    pub(crate) fn new(
        policy: OutagePolicy,
        probe: impl Fn() -> ProbeFuture + Send + Sync + 'static,
    ) -> Self {
        Breaker {
            state: Arc::new(State {
                policy,
                down: AtomicBool::new(false),
                probing: AtomicBool::new(false),
                probe: Box::new(probe),
            }),
        }
    }

    /// `true` while the store is known to be down.
    pub(crate) fn is_down(&self) -> bool {
        self.state.down.load(Ordering::Acquire)
    }

    /// Runs a verification read: at once [`OutageError::Down`] while down, else `op` bounded
    /// by the timeout; a timeout or a reachability failure marks the store down.
    pub(crate) async fn read<T>(
        &self,
        op: impl Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        if self.is_down() {
            return Err(StoreError::backend(OutageError::Down));
        }
        let limit = self.state.policy.timeout;
        match tokio::time::timeout(limit, op).await {
            Ok(r) => self.observe(r),
            Err(_) => {
                self.mark_down();
                Err(StoreError::backend(OutageError::TimedOut(limit)))
            }
        }
    }

    /// Runs a write or a listing: at once [`OutageError::Down`] while down, else `op` to its
    /// end; a reachability failure marks the store down.
    pub(crate) async fn write<T>(
        &self,
        op: impl Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        if self.is_down() {
            return Err(StoreError::backend(OutageError::Down));
        }
        self.observe(op.await)
    }

    /// Marks the store down if `r` is an error saying the database is unreachable.
    fn observe<T>(&self, r: Result<T, StoreError>) -> Result<T, StoreError> {
        if let Err(StoreError::Backend(e)) = &r {
            if e.downcast_ref::<sqlx::Error>().is_some_and(unreachable) {
                self.mark_down();
            }
        }
        r
    }

    fn mark_down(&self) {
        if !self.state.down.swap(true, Ordering::AcqRel) {
            tracing::warn!(target: "keygate", "token store unreachable: failing fast until a probe succeeds");
        }
        if !self.state.probing.swap(true, Ordering::AcqRel) {
            let weak = Arc::downgrade(&self.state);
            // Outside a runtime there is no probe; the next operation after the runtime
            // starts marks the store down again and starts it.
            if let Ok(rt) = tokio::runtime::Handle::try_current() {
                rt.spawn(run_probe(weak));
            } else {
                self.state.probing.store(false, Ordering::Release);
                self.state.down.store(false, Ordering::Release);
            }
        }
    }
}

/// Checks the database until a check succeeds, then marks the store up. Ends early when
/// every clone of the store is gone.
async fn run_probe(state: Weak<State>) {
    let mut first = true;
    loop {
        let (check, limit, interval) = {
            let Some(s) = state.upgrade() else { return };
            ((s.probe)(), s.policy.timeout, s.policy.probe_interval)
        };
        if !first {
            tokio::time::sleep(interval).await;
        }
        first = false;
        let ok = matches!(tokio::time::timeout(limit, check).await, Ok(Ok(())));
        let Some(s) = state.upgrade() else { return };
        if ok {
            s.probing.store(false, Ordering::Release);
            s.down.store(false, Ordering::Release);
            tracing::info!(target: "keygate", "token store reachable again");
            return;
        }
    }
}

/// The probe of a store over `pool`: checks every idle connection with a ping, discarding
/// the broken ones (a connection the outage cut would otherwise fail the first request that
/// gets it), and succeeds if the database answers on a live connection.
pub(crate) fn pool_probe<DB: sqlx::Database>(
    pool: sqlx::Pool<DB>,
) -> impl Fn() -> ProbeFuture + Send + Sync + 'static {
    move || {
        let pool = pool.clone();
        Box::pin(async move {
            let idle = pool.num_idle();
            let mut held = Vec::with_capacity(idle + 1);
            let mut live = false;
            for _ in 0..=idle {
                let mut conn = pool.acquire().await.map_err(StoreError::backend)?;
                match sqlx::Connection::ping(&mut *conn).await {
                    Ok(()) => live = true,
                    Err(_) => conn.close_on_drop(),
                }
                held.push(conn);
            }
            drop(held);
            if live {
                return Ok(());
            }
            let mut conn = pool.acquire().await.map_err(StoreError::backend)?;
            sqlx::Connection::ping(&mut *conn)
                .await
                .map_err(StoreError::backend)
        })
    }
}

/// Whether `e` says the database cannot be reached (as opposed to a failed statement).
pub(crate) fn unreachable(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => true,
        // SQLSTATE class 08 (connection exception), 57P01-57P03 (the server is shutting
        // down or not accepting connections yet).
        sqlx::Error::Database(db) => db
            .code()
            .is_some_and(|c| c.starts_with("08") || matches!(&*c, "57P01" | "57P02" | "57P03")),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn breaker(ok: Arc<AtomicBool>) -> Breaker {
        let policy = OutagePolicy::new()
            .timeout(Duration::from_millis(20))
            .and_then(|p| p.probe_interval(Duration::from_millis(5)))
            .expect("valid policy");
        Breaker::new(policy, move || {
            let ok = ok.load(Ordering::SeqCst);
            Box::pin(async move {
                if ok {
                    Ok(())
                } else {
                    Err(StoreError::backend(OutageError::Down))
                }
            })
        })
    }

    #[test]
    fn policy_bounds_are_checked() {
        assert_eq!(OutagePolicy::new().time_limit(), DEFAULT_OUTAGE_TIMEOUT);
        assert!(OutagePolicy::new().timeout(Duration::ZERO).is_err());
        assert!(
            OutagePolicy::new()
                .timeout(Duration::from_secs(61))
                .is_err()
        );
        assert!(OutagePolicy::new().probe_interval(Duration::ZERO).is_err());
        assert!(
            OutagePolicy::new()
                .probe_interval(Duration::from_secs(1))
                .is_ok()
        );
    }

    #[tokio::test]
    async fn a_timeout_opens_the_circuit_until_a_probe_succeeds() {
        let ok = Arc::new(AtomicBool::new(false));
        let b = breaker(Arc::clone(&ok));
        let slow = b
            .read(async {
                tokio::time::sleep(Duration::from_secs(10)).await;
                Ok::<_, StoreError>(())
            })
            .await;
        let source = match slow {
            Err(StoreError::Backend(e)) => e.downcast_ref::<OutageError>().copied(),
            _ => None,
        };
        assert_eq!(
            source,
            Some(OutageError::TimedOut(Duration::from_millis(20)))
        );
        assert!(b.is_down());
        let fast = b.read(async { Ok::<_, StoreError>(()) }).await;
        assert!(
            matches!(&fast, Err(StoreError::Backend(e)) if e.downcast_ref::<OutageError>() == Some(&OutageError::Down)),
            "while down, an operation fails without running: {fast:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(b.is_down(), "a failing probe keeps the circuit open");
        ok.store(true, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!b.is_down(), "a succeeding probe closes it");
        assert!(b.read(async { Ok::<_, StoreError>(()) }).await.is_ok());
    }

    #[tokio::test]
    async fn statement_errors_do_not_open_the_circuit() {
        let b = breaker(Arc::new(AtomicBool::new(true)));
        let r = b
            .read(async { Err::<(), _>(StoreError::backend(sqlx::Error::RowNotFound)) })
            .await;
        assert!(r.is_err());
        assert!(!b.is_down());
        let r = b
            .read(async { Err::<(), _>(StoreError::backend(sqlx::Error::PoolTimedOut)) })
            .await;
        assert!(r.is_err());
        assert!(b.is_down());
    }
}
