//! The PostgreSQL store: see [`PostgresStore`].

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::postgres::{PgListener, PgPool, PgPoolOptions, PgRow};
use sqlx::types::Json;
use sqlx::{Postgres, QueryBuilder};

use super::outage::{Breaker, OutagePolicy, pool_probe};
use super::sql::{
    Dialect, HISTORY, TokenRow, apply_migrations, bad_row, check_ident, claim_fingerprint, col,
    conflict_or_not_found, digest_of, fetch_page, fetch_record, insert_error, key_version_from_i64,
    parse_allowed_ips, push_filter, push_page, split_scopes, version_from_i64, version_to_i64,
};
use super::{Page, PageRequest, Reach, TokenFilter};
use crate::digest::{Digest, StoredDigest};
use crate::error::{Error, StoreError};
use crate::ip::IpNet;
use crate::manager::TokenManager;
use crate::record::{RetiredSecret, TokenRecord};
use crate::scope::{ProjectId, Projects, Scope, ScopeSet};
use crate::token::TokenId;

/// Longest wait between two reconnection attempts of the invalidation listener.
const LISTENER_MAX_BACKOFF: Duration = Duration::from_secs(2);

/// A [`TokenStore`](super::TokenStore) in a PostgreSQL database (feature `postgres`), over a pool the
/// application passes in: for several service instances sharing one database, with
/// cross-instance cache invalidation through `LISTEN`/`NOTIFY`.
///
/// Cheap to clone (the pool and the statements are shared). Call
/// [`migrate`](Self::migrate) once at start-up before using it.
///
/// ```no_run
/// # async fn run() -> Result<(), keygate::Error> {
/// use keygate::cache::CacheConfig;
/// use keygate::{PostgresStore, ServerKey, TokenManager};
///
/// let store = PostgresStore::connect("postgres://app@db/app").await?.with_schema("auth")?;
/// store.migrate().await?;
/// let manager = TokenManager::builder(store.clone())
///     .server_key(ServerKey::generate())
///     .cache(CacheConfig::new())
///     .build()?;
/// // Drop cached verifications when another instance revokes, disables, rotates, updates
/// // or deletes a token. Keep the handle: dropping it stops the listener.
/// let _listener = store.spawn_invalidation_listener(manager.clone()).await?;
/// # Ok(())
/// # }
/// ```
///
/// # Schema
///
/// Tables `keygate_tokens` and `keygate_schema_migrations` in the schema chosen with
/// [`PostgresStore::with_schema`] (default `public`), so they sit beside the application's
/// own tables. The id is the primary key; the current digest is a 32-byte `bytea` next to
/// its key version, with a B-tree index; the secrets retired by rotations are three arrays
/// of equal length, newest first (`retired_digests bytea[]`, `retired_key_versions
/// bigint[]`, `retired_valid_until timestamptz[]`), the digests with a GIN index, so that
/// verification finds a token by any of its digests in one query (a bitmap OR of the two
/// indexes). No column holds a plaintext token. `secret_issued_at` is when the current
/// secret was issued; for a token rotated before schema version 3 it was not recorded and
/// the upgrade sets it to `created_at`, so the policy's lifetime cap then counts from
/// creation (the conservative choice). Scopes and projects are `text[]` (projects
/// `NULL` for "all projects", `{}` for none) with GIN indexes; owner, creator and status each
/// have an index with the listing order `(created_at, id)`; expiry has its own. Ids, owners
/// and creators use the `"C"` collation, so order and equality are by bytes.
/// `name_contains` (ASCII case folding) is served by a `pg_trgm` GIN index on the folded
/// name (schema version 4), which the planner uses for a rare substring and skips for a common
/// one (walking the listing order finds a page sooner); if the role cannot create the
/// `pg_trgm` extension, the migration warns and the filter is evaluated on the rows the other
/// conditions and the listing order select. A [`Reach`] is part of the
/// listing query too (owner equality, a scope check per element of `scopes`, `projects <@`
/// the reach's set), so a page costs what the index walk to fill it costs,
/// never a fetch of everything.
///
/// # Consistency
///
/// An update is one statement: `UPDATE ... SET ..., version = version + 1, last_used_at =
/// GREATEST(last_used_at, $new) WHERE id = $id AND version = $expected`, which also sends
/// the notification (`pg_notify`) in the same transaction, so a notification is sent if and
/// only if the change commits. Verification is one query by digest.
///
/// # Bound on staleness across instances
///
/// With a [`CacheConfig`](crate::cache::CacheConfig) on each instance's manager and
/// [`PostgresStore::spawn_invalidation_listener`] running, a revoke, disable, rotate,
/// update or delete on one instance reaches the others' caches within the notification
/// latency (on loopback: a p99 of about a millisecond; see the `multi_instance` test). If a
/// notification is lost (the listener's connection drops), the listener drops the whole
/// cache once it listens again (so entries cached while it was away go too), and no entry
/// outlives the cache TTL (default 5 s, at most 60 s) in any case, also during a database
/// outage (see [`crate::store::outage`]). So the bound is: notification latency normally, the cache TTL at worst.
#[derive(Clone)]
pub struct PostgresStore {
    pool: PgPool,
    schema: Arc<str>,
    sql: Arc<Statements>,
    breaker: Breaker,
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStore")
            .field("schema", &self.schema)
            .finish_non_exhaustive()
    }
}

struct Statements {
    quoted_schema: String,
    channel: String,
    migrations: String,
    select: String,
    get: String,
    find_by_digest: String,
    insert: String,
    update: String,
    exists: String,
    delete: String,
    touch: String,
    claim_fingerprint: String,
    prune: String,
    count_prunable: String,
}

const COLUMNS: &str = "id, name, description, owner, created_by, created_at, updated_at, \
    secret_issued_at, expires_at, status, scopes, projects, metadata, digest, key_version, \
    retired_digests, retired_key_versions, retired_valid_until, last_used_at, version, \
    allowed_ips, expiry_notice_window, expiry_notice_expires_at";

impl Statements {
    fn new(schema: &str) -> Self {
        let quoted_schema = format!("\"{schema}\"");
        let t = format!("{quoted_schema}.keygate_tokens");
        let select = format!("SELECT {COLUMNS} FROM {t} t");
        // `TokenRecord::is_prunable` on `t`, the cutoff bound as `$1`: ended (revoked, or
        // expired) before the cutoff, and no retired secret valid until the cutoff or later.
        let prunable = "(t.expires_at < $1 OR (t.status = 'revoked' AND t.updated_at < $1)) \
             AND NOT EXISTS (SELECT 1 FROM unnest(t.retired_valid_until) AS v (until) \
             WHERE v.until >= $1)";
        Statements {
            get: format!("{select} WHERE t.id = $1"),
            // The digest index and the GIN index of the retired digests (a bitmap OR).
            find_by_digest: format!(
                "{select} WHERE t.digest = $1 OR t.retired_digests @> ARRAY[$1::bytea] LIMIT 1"
            ),
            insert: format!(
                "INSERT INTO {t} ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, \
                 $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22, $23)"
            ),
            // The compare-and-swap and its notification, in one statement.
            update: format!(
                "WITH u AS (UPDATE {t} SET name = $2, description = $3, owner = $4, \
                 created_by = $5, created_at = $6, updated_at = $7, secret_issued_at = $8, \
                 expires_at = $9, status = $10, scopes = $11, projects = $12, metadata = $13, \
                 digest = $14, key_version = $15, retired_digests = $16, \
                 retired_key_versions = $17, retired_valid_until = $18, \
                 last_used_at = GREATEST(last_used_at, $19), version = version + 1, \
                 allowed_ips = $22, expiry_notice_window = $23, \
                 expiry_notice_expires_at = $24 \
                 WHERE id = $1 AND version = $20 RETURNING id, version) \
                 SELECT u.version, pg_notify($21, u.id)::text AS notified FROM u"
            ),
            exists: format!("SELECT 1 FROM {t} WHERE id = $1"),
            delete: format!(
                "WITH d AS (DELETE FROM {t} WHERE id = $1 RETURNING id) \
                 SELECT d.id, pg_notify($2, d.id)::text AS notified FROM d"
            ),
            touch: format!(
                "UPDATE {t} SET last_used_at = $2 \
                 WHERE id = $1 AND (last_used_at IS NULL OR last_used_at < $2)"
            ),
            // A no-op update on conflict, so that the row kept is returned either way.
            claim_fingerprint: format!(
                "INSERT INTO {quoted_schema}.keygate_server_keys (version, fingerprint) \
                 VALUES ($1, $2) ON CONFLICT (version) DO UPDATE SET version = EXCLUDED.version \
                 RETURNING fingerprint"
            ),
            // One statement per batch: the batch's ids, their deletion and one notification
            // per deleted id (sent if and only if the deletion commits).
            prune: format!(
                "WITH d AS (DELETE FROM {t} WHERE id IN \
                 (SELECT t.id FROM {t} t WHERE {prunable} LIMIT $2) RETURNING id) \
                 SELECT d.id, pg_notify($3, d.id)::text AS notified FROM d"
            ),
            count_prunable: format!("SELECT count(*) FROM {t} t WHERE {prunable}"),
            migrations: format!("{quoted_schema}.keygate_schema_migrations"),
            channel: format!("keygate.{schema}"),
            select,
            quoted_schema,
        }
    }
}

impl PostgresStore {
    /// The default schema.
    pub const DEFAULT_SCHEMA: &str = "public";

    /// How long [`PostgresStore::connect`]'s pool waits for a connection before failing a
    /// request with a store error.
    pub const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);

    /// A store over `pool`, in the schema `public`.
    ///
    /// For one round trip per verification, build the pool with
    /// `test_before_acquire(false)` as [`connect`](Self::connect) does; sqlx's default pings
    /// each connection before handing it out, which doubles the round trips.
    pub fn new(pool: PgPool) -> Self {
        PostgresStore {
            breaker: Breaker::new(OutagePolicy::default(), pool_probe(pool.clone())),
            pool,
            schema: PostgresStore::DEFAULT_SCHEMA.into(),
            sql: Arc::new(Statements::new(PostgresStore::DEFAULT_SCHEMA)),
        }
    }

    /// Sets how the store behaves when the database cannot be reached (default
    /// [`OutagePolicy::default`]: verification reads answer within 250 ms, and at once while
    /// the database is known to be down). See [`crate::store::outage`].
    pub fn with_outage_policy(mut self, policy: OutagePolicy) -> Self {
        self.breaker = Breaker::new(policy, pool_probe(self.pool.clone()));
        self
    }

    /// Connects a pool to `url` (`postgres://...`), waiting at most [`PostgresStore::ACQUIRE_TIMEOUT`] for
    /// a connection per request, and makes a store over it.
    ///
    /// The pool does not ping a connection before handing it out, so a verification is one
    /// round trip (one query by primary key). A connection that broke while idle fails the
    /// one request that uses it (a store error: fail closed) and is then discarded.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        let pool = PgPoolOptions::new()
            .acquire_timeout(PostgresStore::ACQUIRE_TIMEOUT)
            .test_before_acquire(false)
            .connect(url)
            .await
            .map_err(StoreError::backend)?;
        Ok(Self::new(pool))
    }

    /// Puts keygate's tables in `schema` instead of `public`; [`migrate`](Self::migrate)
    /// creates the schema if it does not exist.
    ///
    /// The name is up to 40 characters from `a-z`, `0-9` and `_`, starting with a letter or
    /// `_`, and not starting with `pg_`; anything else is refused, so a schema name can never
    /// inject SQL.
    pub fn with_schema(mut self, schema: &str) -> Result<Self, Error> {
        let invalid = |reason| Error::InvalidField {
            field: "schema",
            reason,
        };
        check_ident(schema, false).map_err(invalid)?;
        if schema.starts_with("pg_") {
            return Err(invalid("names starting with `pg_` are reserved"));
        }
        self.schema = schema.into();
        self.sql = Arc::new(Statements::new(schema));
        Ok(self)
    }

    /// The pool.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// The schema.
    pub fn schema(&self) -> &str {
        &self.schema
    }

    /// The notification channel of this store's schema (`keygate.{schema}`). Every
    /// committed update or delete sends the token id on it.
    pub fn channel(&self) -> &str {
        &self.sql.channel
    }

    /// Creates or upgrades keygate's tables: creates the schema if missing, then applies, in
    /// order and in one transaction, the embedded migrations the database has not recorded
    /// in `keygate_schema_migrations`. Idempotent, and safe to run from several instances at
    /// once (an advisory lock serialises them).
    ///
    /// Refuses (changing nothing) a database whose recorded version is newer than this
    /// build knows.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await.map_err(StoreError::backend)?;
        sqlx::query("SELECT pg_advisory_xact_lock(hashtext($1))::text")
            .bind(format!("keygate.migrate.{}", self.schema))
            .execute(&mut *tx)
            .await
            .map_err(StoreError::backend)?;
        let exists = sqlx::query("SELECT 1 FROM pg_namespace WHERE nspname = $1")
            .bind(&*self.schema)
            .fetch_optional(&mut *tx)
            .await
            .map_err(StoreError::backend)?
            .is_some();
        if !exists {
            sqlx::query(&format!("CREATE SCHEMA {}", self.sql.quoted_schema))
                .execute(&mut *tx)
                .await
                .map_err(StoreError::backend)?;
        }
        let (table, schema) = (&self.sql.migrations, &self.sql.quoted_schema);
        apply_migrations::<Postgres>(&mut tx, table, schema).await?;
        tx.commit().await.map_err(StoreError::backend)
    }

    /// Starts a background task that keeps `manager`'s verification cache in step with
    /// changes made by other instances: it `LISTEN`s on [`channel`](Self::channel) over a
    /// connection of its own (made with this pool's connect options) and calls
    /// [`TokenManager::invalidate`] for each token id notified.
    ///
    /// Notifications sent while the connection is down are lost, so whenever the listener
    /// has listened again after losing its connection it calls
    /// [`TokenManager::invalidate_all`]: after the new `LISTEN` is in place, so that an
    /// entry cached while it was away is dropped too. It reconnects by itself, with a backoff
    /// of at most 2 s. While it is away, cached entries are served up to their TTL and never
    /// beyond (also during a database outage; see [`crate::store::outage`]). Returns once the first `LISTEN` is in
    /// place, or fails if it cannot be. The task stops when the returned handle is dropped.
    pub async fn spawn_invalidation_listener(
        &self,
        manager: TokenManager,
    ) -> Result<ListenerHandle, StoreError> {
        let options = (*self.pool.connect_options()).clone();
        let pool = PgPoolOptions::new()
            .max_connections(1)
            .min_connections(0)
            .idle_timeout(None)
            .max_lifetime(None)
            .acquire_timeout(PostgresStore::ACQUIRE_TIMEOUT)
            .connect_lazy_with(options);
        let channel = self.sql.channel.clone();
        let listener = listen(&pool, &channel).await?;
        // Anything cached before the LISTEN may have missed a notification.
        manager.invalidate_all();
        let task = tokio::spawn(run_listener(pool, channel, listener, manager));
        Ok(ListenerHandle { task })
    }
}

impl PostgresStore {
    /// Tells a failed compare-and-swap apart: `Conflict` if the record exists.
    async fn conflict_or_not_found(&self, id: &TokenId) -> StoreError {
        let exists = sqlx::query(&self.sql.exists).bind(id.as_str());
        conflict_or_not_found(&self.pool, exists).await
    }
}

/// The running invalidation listener of [`PostgresStore::spawn_invalidation_listener`].
/// Dropping it stops the listener.
#[derive(Debug)]
pub struct ListenerHandle {
    task: tokio::task::JoinHandle<()>,
}

impl ListenerHandle {
    /// `true` while the listener task runs (it only ends when the handle is dropped or the
    /// runtime shuts down).
    pub fn is_running(&self) -> bool {
        !self.task.is_finished()
    }
}

impl Drop for ListenerHandle {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn listen(pool: &PgPool, channel: &str) -> Result<PgListener, StoreError> {
    let mut listener = PgListener::connect_with(pool)
        .await
        .map_err(StoreError::backend)?;
    listener
        .listen(channel)
        .await
        .map_err(StoreError::backend)?;
    Ok(listener)
}

async fn run_listener(pool: PgPool, channel: String, listener: PgListener, manager: TokenManager) {
    let mut listener = Some(listener);
    let mut backoff = Duration::from_millis(20);
    loop {
        match &mut listener {
            Some(l) => match l.try_recv().await {
                Ok(Some(n)) => match TokenId::new(n.payload()) {
                    Ok(id) => manager.invalidate(&id),
                    Err(_) => manager.invalidate_all(),
                },
                // The connection was lost. sqlx would re-subscribe on the next call, but
                // the cache must be cleared only once the new `LISTEN` is in place (an entry
                // cached before it may miss a notification), so reconnect here instead.
                Ok(None) => {
                    tracing::warn!(target: "keygate", "invalidation listener lost its connection");
                    listener = None;
                }
                Err(e) => {
                    tracing::warn!(target: "keygate", error = %e, "invalidation listener lost its connection");
                    listener = None;
                }
            },
            None => {
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(LISTENER_MAX_BACKOFF);
                match listen(&pool, &channel).await {
                    Ok(l) => {
                        // Listening again: whatever was cached until now, including entries
                        // cached while the listener was away, may have missed a notification.
                        manager.invalidate_all();
                        backoff = Duration::from_millis(20);
                        listener = Some(l);
                    }
                    Err(e) => {
                        tracing::debug!(target: "keygate", error = %e, "invalidation listener cannot reconnect yet");
                    }
                }
            }
        }
    }
}

/// A `timestamptz` value, decoded without panicking.
///
/// sqlx's own `DateTime<Utc>` decoding adds the stored microseconds to the PostgreSQL epoch
/// unchecked, and so panics on `infinity`, `-infinity` and any instant beyond chrono's range
/// (PostgreSQL's reaches the year 294276). This reads the binary value (microseconds since
/// 2000-01-01 UTC) with checked arithmetic: those values are a decoding error, which
/// [`col`] reports as the column's [`bad_row`].
struct Timestamp(DateTime<Utc>);

/// Microseconds from the Unix epoch to PostgreSQL's (2000-01-01 00:00:00 UTC).
const PG_EPOCH_UNIX_MICROS: i64 = 946_684_800_000_000;

#[derive(Debug, thiserror::Error)]
#[error("timestamp out of range (infinite, or beyond what keygate represents)")]
struct TimestampRange;

impl Timestamp {
    /// The instant `micros` microseconds after PostgreSQL's epoch, if keygate can hold it.
    fn from_pg_micros(micros: i64) -> Option<DateTime<Utc>> {
        // `infinity` and `-infinity` are i64::MAX and i64::MIN.
        if micros == i64::MAX || micros == i64::MIN {
            return None;
        }
        DateTime::from_timestamp_micros(micros.checked_add(PG_EPOCH_UNIX_MICROS)?)
    }
}

impl sqlx::Type<Postgres> for Timestamp {
    fn type_info() -> sqlx::postgres::PgTypeInfo {
        <DateTime<Utc> as sqlx::Type<Postgres>>::type_info()
    }
    fn compatible(ty: &sqlx::postgres::PgTypeInfo) -> bool {
        <DateTime<Utc> as sqlx::Type<Postgres>>::compatible(ty)
    }
}

impl sqlx::postgres::PgHasArrayType for Timestamp {
    fn array_type_info() -> sqlx::postgres::PgTypeInfo {
        <DateTime<Utc> as sqlx::postgres::PgHasArrayType>::array_type_info()
    }
}

impl<'r> sqlx::Decode<'r, Postgres> for Timestamp {
    fn decode(value: sqlx::postgres::PgValueRef<'r>) -> Result<Self, sqlx::error::BoxDynError> {
        match value.format() {
            sqlx::postgres::PgValueFormat::Binary => {
                let bytes: [u8; 8] = value.as_bytes()?.try_into()?;
                Self::from_pg_micros(i64::from_be_bytes(bytes))
                    .map(Timestamp)
                    .ok_or_else(|| TimestampRange.into())
            }
            // Text results (not used by this store's queries): sqlx's parser, which fails
            // rather than panics on what it cannot read.
            sqlx::postgres::PgValueFormat::Text => {
                <DateTime<Utc> as sqlx::Decode<'r, Postgres>>::decode(value).map(Timestamp)
            }
        }
    }
}

impl TokenRow for PgRow {
    /// A `timestamptz` column (see [`Timestamp`]).
    fn instant(&self, column: &'static str) -> Result<DateTime<Utc>, StoreError> {
        col::<_, Timestamp>(self, column).map(|t| t.0)
    }

    /// A nullable `timestamptz` column (see [`Timestamp`]).
    fn opt_instant(&self, column: &'static str) -> Result<Option<DateTime<Utc>>, StoreError> {
        col::<_, Option<Timestamp>>(self, column).map(|t| t.map(|t| t.0))
    }

    fn scopes(&self) -> Result<ScopeSet, StoreError> {
        col::<_, Vec<String>>(self, "scopes")?
            .iter()
            .map(Scope::new)
            .collect::<Result<ScopeSet, _>>()
            .map_err(|_| bad_row("scopes"))
    }

    fn projects(&self) -> Result<Projects, StoreError> {
        match col::<_, Option<Vec<String>>>(self, "projects")? {
            None => Ok(Projects::All),
            Some(list) => list
                .iter()
                .map(ProjectId::new)
                .collect::<Result<BTreeSet<_>, _>>()
                .map(Projects::Only)
                .map_err(|_| bad_row("projects")),
        }
    }

    fn allowed_ips(&self) -> Result<Vec<IpNet>, StoreError> {
        parse_allowed_ips(col::<_, Vec<String>>(self, "allowed_ips")?)
    }

    fn retired(&self) -> Result<Vec<RetiredSecret>, StoreError> {
        let digests = col::<_, Vec<Vec<u8>>>(self, "retired_digests")?;
        let key_versions = col::<_, Vec<i64>>(self, "retired_key_versions")?;
        let valid_until = col::<_, Vec<Timestamp>>(self, "retired_valid_until")?;
        if digests.len() != key_versions.len() || digests.len() != valid_until.len() {
            return Err(bad_row("retired_digests"));
        }
        digests
            .iter()
            .zip(key_versions)
            .zip(valid_until)
            .map(|((d, k), valid_until)| {
                Ok(RetiredSecret {
                    digest: StoredDigest {
                        digest: digest_of(d, "retired_digests")?,
                        key_version: key_version_from_i64(k, "retired_key_versions")?,
                    },
                    valid_until: valid_until.0,
                })
            })
            .collect()
    }
}

/// The conditions of [`Reach::contains`], on `t`.
fn push_reach(q: &mut QueryBuilder<'_, Postgres>, reach: &Reach) {
    if let Some(owner) = &reach.owner {
        q.push(" AND t.owner = ").push_bind(owner.clone());
    }
    if !reach.scopes.is_admin() {
        // No scope of the token escapes the reach: each is one of the reach's exact scopes,
        // or extends one of its `p:*` prefixes by at least one character.
        let (exact, prefixes) = split_scopes(&reach.scopes);
        let exact: Vec<String> = exact.into_iter().map(str::to_owned).collect();
        let prefixes: Vec<String> = prefixes.into_iter().map(str::to_owned).collect();
        q.push(
            " AND NOT EXISTS (SELECT 1 FROM unnest(t.scopes) AS rs(scope) WHERE rs.scope <> ALL(",
        )
        .push_bind(exact)
        .push("::text[]) AND NOT EXISTS (SELECT 1 FROM unnest(")
        .push_bind(prefixes)
        .push(
            "::text[]) AS rw(prefix) WHERE starts_with(rs.scope, rw.prefix) \
                 AND length(rs.scope) > length(rw.prefix)))",
        );
    }
    if let Projects::Only(set) = &reach.projects {
        // Not all projects (NULL), and no project outside the set.
        let set: Vec<String> = set.iter().map(|p| p.as_str().to_owned()).collect();
        q.push(" AND t.projects <@ ")
            .push_bind(set)
            .push("::text[]");
    }
}

/// Binds the columns after `version` (`$21` to `$23` of an insert, `$22` to `$24` of an
/// update): the allowed IP ranges in their text forms and the expiry notice.
fn bind_tail<'q>(q: PgQuery<'q>, r: &'q TokenRecord) -> PgQuery<'q> {
    q.bind(
        r.allowed_ips
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>(),
    )
    .bind(super::sql::expiry_notice_window(r))
    .bind(r.expiry_notice.as_deref().map(|n| n.expires_at))
}

type PgQuery<'q> = sqlx::query::Query<'q, Postgres, sqlx::postgres::PgArguments>;

/// Binds `$1` (id) to `$19` (last_used_at), the order of [`COLUMNS`] up to `version`.
fn bind_record<'q>(q: PgQuery<'q>, r: &'q TokenRecord) -> PgQuery<'q> {
    let projects = match &r.projects {
        Projects::All => None,
        Projects::Only(set) => Some(set.iter().map(ProjectId::as_str).collect::<Vec<_>>()),
    };
    q.bind(r.id.as_str())
        .bind(r.name.as_str())
        .bind(r.description.as_str())
        .bind(r.owner.as_str())
        .bind(r.created_by.as_str())
        .bind(r.created_at)
        .bind(r.updated_at)
        .bind(r.secret_issued_at)
        .bind(r.expiry.at())
        .bind(r.status.as_str())
        .bind(r.scopes.iter().map(Scope::as_str).collect::<Vec<_>>())
        .bind(projects)
        .bind(Json(&r.metadata))
        .bind(&r.digest.digest.as_bytes()[..])
        .bind(i64::from(r.digest.key_version))
        .bind(
            r.retired
                .iter()
                .map(|p| &p.digest.digest.as_bytes()[..])
                .collect::<Vec<_>>(),
        )
        .bind(
            r.retired
                .iter()
                .map(|p| i64::from(p.digest.key_version))
                .collect::<Vec<_>>(),
        )
        .bind(r.retired.iter().map(|p| p.valid_until).collect::<Vec<_>>())
        .bind(r.last_used_at)
}

impl Dialect for Postgres {
    type Time = DateTime<Utc>;
    fn time(at: DateTime<Utc>) -> DateTime<Utc> {
        at
    }
    // ASCII case folding only, as the reference semantics (ILIKE would fold more).
    const FOLDED_NAME: &'static str =
        "translate(t.name, 'ABCDEFGHIJKLMNOPQRSTUVWXYZ', 'abcdefghijklmnopqrstuvwxyz')";
    const MIGRATIONS: [&'static str; HISTORY.len()] = [
        include_str!("migrations/postgres/0001_create_tokens.sql"),
        include_str!("migrations/postgres/0002_index_digests.sql"),
        include_str!("migrations/postgres/0003_retired_secrets.sql"),
        include_str!("migrations/postgres/0004_index_names.sql"),
        include_str!("migrations/postgres/0005_server_keys.sql"),
        include_str!("migrations/postgres/0006_allowed_ips.sql"),
        include_str!("migrations/postgres/0007_expiry_notice.sql"),
    ];
    const PLACEHOLDER: &'static str = "{schema}";
    const CREATE_RECORDS: &'static str = "CREATE TABLE IF NOT EXISTS {table} \
        (version BIGINT NOT NULL PRIMARY KEY, name TEXT NOT NULL, \
        applied_at TIMESTAMPTZ NOT NULL DEFAULT now())";
    const INSERT_RECORD: &'static str = "INSERT INTO {table} (version, name) VALUES ($1, $2)";
    fn bind_applied_at<'q>(q: PgQuery<'q>) -> PgQuery<'q> {
        q
    }
}

/// The operations, before the outage policy ([`Breaker`]) is applied.
impl PostgresStore {
    async fn db_insert(&self, record: &TokenRecord) -> Result<(), StoreError> {
        let version = version_to_i64(record.version)?;
        let q = bind_record(sqlx::query(&self.sql.insert), record).bind(version);
        bind_tail(q, record)
            .execute(&self.pool)
            .await
            .map_err(insert_error)?;
        Ok(())
    }

    async fn db_get(&self, id: &TokenId) -> Result<Option<Arc<TokenRecord>>, StoreError> {
        let query = sqlx::query(&self.sql.get).bind(id.as_str());
        fetch_record(&self.pool, query).await
    }

    async fn db_find_by_digest(
        &self,
        digest: &Digest,
    ) -> Result<Option<Arc<TokenRecord>>, StoreError> {
        let query = sqlx::query(&self.sql.find_by_digest).bind(&digest.as_bytes()[..]);
        fetch_record(&self.pool, query).await
    }

    async fn db_update(&self, record: &TokenRecord) -> Result<u64, StoreError> {
        let Ok(expected) = i64::try_from(record.version) else {
            // No stored version is this large: it cannot match.
            return Err(self.conflict_or_not_found(&record.id).await);
        };
        let q = bind_record(sqlx::query(&self.sql.update), record)
            .bind(expected)
            .bind(&self.sql.channel);
        let row = bind_tail(q, record)
            .fetch_optional(&self.pool)
            .await
            .map_err(StoreError::backend)?;
        if let Some(row) = row {
            return version_from_i64(col(&row, "version")?);
        }
        // Only the error path reads again, to tell the two failures apart.
        Err(self.conflict_or_not_found(&record.id).await)
    }

    async fn db_delete(&self, id: &TokenId) -> Result<bool, StoreError> {
        let row = sqlx::query(&self.sql.delete)
            .bind(id.as_str())
            .bind(&self.sql.channel)
            .fetch_optional(&self.pool)
            .await
            .map_err(StoreError::backend)?;
        Ok(row.is_some())
    }

    async fn db_list(&self, filter: &TokenFilter, page: &PageRequest) -> Result<Page, StoreError> {
        let mut q = QueryBuilder::<Postgres>::new(&self.sql.select);
        q.push(" WHERE TRUE");
        push_filter(&mut q, filter);
        if let Some(project) = &filter.project {
            q.push(" AND (t.projects IS NULL OR t.projects @> ARRAY[")
                .push_bind(project.as_str())
                .push("::text])");
        }
        if let Some(scope) = &filter.scope {
            q.push(" AND t.scopes @> ARRAY[")
                .push_bind(scope.as_str())
                .push("::text]");
        }
        if let Some(reach) = &filter.within {
            push_reach(&mut q, reach);
        }
        push_page(&mut q, page, ("t.created_at", "t.id"));
        fetch_page(&self.pool, q.build(), page).await
    }

    async fn db_claim_key_fingerprint(
        &self,
        key_version: u32,
        fingerprint: &Digest,
    ) -> Result<Option<Digest>, StoreError> {
        let claim = sqlx::query(&self.sql.claim_fingerprint)
            .bind(i64::from(key_version))
            .bind(&fingerprint.as_bytes()[..]);
        claim_fingerprint(&self.pool, claim).await
    }

    async fn db_touch(&self, id: &TokenId, at: DateTime<Utc>) -> Result<(), StoreError> {
        sqlx::query(&self.sql.touch)
            .bind(id.as_str())
            .bind(at)
            .execute(&self.pool)
            .await
            .map_err(StoreError::backend)?;
        Ok(())
    }
}

/// Pruning, before the outage policy: each batch is one `DELETE ... WHERE id IN (SELECT ...
/// LIMIT n)` statement (its own transaction, holding row locks for that batch only), which
/// notifies other instances of every id it deletes, as `delete` does.
impl PostgresStore {
    async fn db_prune(&self, cutoff: DateTime<Utc>, limit: u64) -> Result<u64, StoreError> {
        if limit == 0 {
            return Ok(0);
        }
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = sqlx::query(&self.sql.prune)
            .bind(cutoff)
            .bind(limit)
            .bind(&self.sql.channel)
            .fetch_all(&self.pool)
            .await
            .map_err(StoreError::backend)?;
        Ok(rows.len() as u64)
    }

    async fn db_count_prunable(&self, cutoff: DateTime<Utc>) -> Result<u64, StoreError> {
        let n: i64 = sqlx::query_scalar(&self.sql.count_prunable)
            .bind(cutoff)
            .fetch_one(&self.pool)
            .await
            .map_err(StoreError::backend)?;
        u64::try_from(n).map_err(|_| bad_row("count"))
    }
}

super::sql::breaker_guarded_store!(PostgresStore);

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn schemas_are_validated() {
        let pool = PgPoolOptions::new().connect_lazy_with(Default::default());
        let store = PostgresStore::new(pool);
        assert_eq!(store.schema(), "public");
        assert_eq!(store.channel(), "keygate.public");
        for bad in ["", "pg_catalog", "a\"; drop", "Upper", "1x", "a-b"] {
            assert!(store.clone().with_schema(bad).is_err(), "{bad:?}");
        }
        let s = store.with_schema("auth").expect("valid schema");
        assert_eq!(s.channel(), "keygate.auth");
        assert!(s.sql.get.contains("FROM \"auth\".keygate_tokens t"));
    }

    #[test]
    fn timestamps_decode_with_checked_arithmetic() {
        let epoch = Timestamp::from_pg_micros(0).map(|t| t.to_rfc3339());
        assert_eq!(epoch.as_deref(), Some("2000-01-01T00:00:00+00:00"));
        let before = Timestamp::from_pg_micros(-PG_EPOCH_UNIX_MICROS - 1);
        assert_eq!(before.map(|t| t.timestamp_micros()), Some(-1));
        // infinity, -infinity, PostgreSQL's largest instant (294276-12-31), overflow.
        for micros in [i64::MAX, i64::MIN, 9_223_371_331_199_999_999, i64::MAX - 1] {
            assert_eq!(Timestamp::from_pg_micros(micros), None, "{micros}");
        }
    }
}
