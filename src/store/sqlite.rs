//! The SQLite store: see [`SqliteStore`].

use std::collections::BTreeSet;
use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};
use sqlx::types::Json;
use sqlx::{QueryBuilder, Sqlite};

use super::outage::{Breaker, OutagePolicy, pool_probe};
use super::sql::{
    Dialect, HISTORY, RangeError, TokenRow, apply_migrations, bad_row, check_ident,
    claim_fingerprint, col, conflict_or_not_found, digest_of, fetch_page, fetch_record,
    insert_error, key_version_from_i64, parse_allowed_ips, push_filter, push_page, split_scopes,
    version_to_i64,
};
use super::{Page, PageRequest, Reach, TokenFilter};
use crate::digest::{Digest, StoredDigest};
use crate::error::{Error, StoreError};
use crate::ip::IpNet;
use crate::record::{RetiredSecret, TokenRecord};
use crate::scope::{ProjectId, Projects, Scope, ScopeSet};
use crate::token::TokenId;

/// A [`TokenStore`](super::TokenStore) in a SQLite database (feature `sqlite`), over a pool the application
/// passes in: the embedded default for single-instance services.
///
/// Cheap to clone (the pool and the statements are shared). Call
/// [`migrate`](Self::migrate) once at start-up before using it.
///
/// ```no_run
/// # async fn run() -> Result<(), keygate::Error> {
/// use keygate::{ServerKey, SqliteStore, TokenManager};
///
/// // Creates the file on first start (WAL mode, 5 s busy timeout).
/// let store = SqliteStore::connect("sqlite:keygate.db").await?;
/// store.migrate().await?;
/// let manager = TokenManager::builder(store).server_key(ServerKey::generate()).build()?;
/// # let _ = manager;
/// # Ok(())
/// # }
/// ```
///
/// # Schema
///
/// Tables `{prefix}tokens`, `{prefix}token_scopes`, `{prefix}token_projects`,
/// `{prefix}token_retired_secrets` and `{prefix}schema_migrations` (prefix `keygate_` unless
/// set with [`SqliteStore::with_table_prefix`]), so they sit beside the application's own
/// tables. The id is the primary key; the digests are 32-byte blobs next to their key
/// versions, each indexed (verification looks tokens up by digest); no column holds a
/// plaintext token. The secrets retired by rotations are rows of
/// `{prefix}token_retired_secrets`, `(token_id, position)` their key, position 0 the newest,
/// with an index on the digest: verification finds a token by its current or any retired
/// digest in one query, through the two digest indexes. Timestamps are integers
/// (microseconds since the Unix epoch, UTC). `secret_issued_at` is when the current secret
/// was issued; for a token rotated before schema version 3 it was not recorded and the
/// upgrade sets it to `created_at`, so the policy's lifetime cap then counts from creation
/// (the conservative choice). Every list filter has an index: owner, creator and status each
/// with the listing order `(created_at, id)`; expiry; scope and project through their child
/// tables; and "all projects" through a partial index. A [`Reach`] is part of the listing
/// query too (owner equality, and per candidate row a primary-key probe of its scope and
/// project rows), so a page costs what the index walk to fill it costs, never
/// a fetch of everything. `name_contains` is a substring search, which no B-tree index can
/// serve: it is evaluated on the rows the other conditions and the listing order select.
///
/// # Concurrency
///
/// Writes run in `BEGIN IMMEDIATE` transactions, so they queue for SQLite's single writer
/// (waiting up to the busy timeout) instead of failing. An update is a compare-and-swap in
/// one `UPDATE ... WHERE id = ? AND version = ?`, with the scope, project and retired-secret
/// rows rewritten in the same transaction: nothing is ever half-written, and no update is
/// lost across connections or processes.
#[derive(Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
    prefix: Arc<str>,
    sql: Arc<Statements>,
    breaker: Breaker,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

/// The statements, with the table prefix filled in once.
struct Statements {
    scopes: String,
    projects: String,
    retired: String,
    migrations: String,
    list: String,
    list_by_scope: String,
    get: String,
    find_by_digest: String,
    insert: String,
    insert_scope: String,
    insert_project: String,
    insert_retired: String,
    update: String,
    exists: String,
    delete_scopes: String,
    delete_projects: String,
    delete_retired: String,
    delete: String,
    touch: String,
    claim_fingerprint: String,
    prunable: String,
    count_prunable: String,
    prune_children: [String; 3],
    prune: String,
}

impl Statements {
    fn new(p: &str) -> Self {
        let tokens = format!("{p}tokens");
        let scopes = format!("{p}token_scopes");
        let projects = format!("{p}token_projects");
        let retired = format!("{p}token_retired_secrets");
        // Alias `o`: the outer query. Listings pick rows (alias `t`) in an inner query with
        // the filters and the limit, so the scope and project subqueries run only for the
        // rows returned.
        let select = format!(
            "SELECT o.id, o.name, o.description, o.owner, o.created_by, o.created_at, \
             o.updated_at, o.secret_issued_at, o.expires_at, o.status, o.all_projects, \
             o.metadata, o.digest, o.key_version, o.last_used_at, o.version, o.allowed_ips, \
             o.expiry_notice_window, o.expiry_notice_expires_at, \
             (SELECT json_group_array(s.scope) FROM {scopes} s WHERE s.token_id = o.id) \
             AS scopes, \
             (SELECT json_group_array(p.project) FROM {projects} p WHERE p.token_id = o.id) \
             AS projects, \
             (SELECT json_group_array(json_array(hex(r.digest), r.key_version, r.valid_until) \
             ORDER BY r.position) FROM {retired} r WHERE r.token_id = o.id) AS retired \
             FROM {tokens} o"
        );
        // `TokenRecord::is_prunable` on `t`, the cutoff bound as `?1`: ended (revoked, or
        // expired) before the cutoff, and no retired secret valid until the cutoff or later.
        let prunable = format!(
            "(t.expires_at < ?1 OR (t.status = 'revoked' AND t.updated_at < ?1)) \
             AND NOT EXISTS (SELECT 1 FROM {retired} r \
             WHERE r.token_id = t.id AND r.valid_until >= ?1)"
        );
        Statements {
            get: format!("{select} WHERE o.id = ?"),
            // Both digest indexes, then the primary key: one query.
            find_by_digest: format!(
                "{select} WHERE o.id IN (SELECT d.id FROM {tokens} d WHERE d.digest = ?1 \
                 UNION ALL SELECT r.token_id FROM {retired} r WHERE r.digest = ?1) LIMIT 1"
            ),
            list: format!("{select} WHERE o.rowid IN (SELECT t.rowid FROM {tokens} t"),
            // By scope: the scope rows carry the listing order, so the scope index yields
            // matches newest first and the walk stops at the limit.
            list_by_scope: format!(
                "{select} WHERE o.rowid IN (SELECT t.rowid FROM {scopes} s \
                 JOIN {tokens} t ON t.id = s.token_id"
            ),
            insert: format!(
                "INSERT INTO {tokens} (id, name, description, owner, created_by, created_at, \
                 updated_at, secret_issued_at, expires_at, status, all_projects, metadata, \
                 digest, key_version, allowed_ips, expiry_notice_window, \
                 expiry_notice_expires_at, last_used_at, version) \
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
            ),
            insert_scope: format!(
                "INSERT INTO {scopes} (token_id, scope, created_at) VALUES (?, ?, ?)"
            ),
            insert_project: format!("INSERT INTO {projects} (token_id, project) VALUES (?, ?)"),
            insert_retired: format!(
                "INSERT INTO {retired} (token_id, position, digest, key_version, valid_until) \
                 VALUES (?, ?, ?, ?, ?)"
            ),
            // The compare-and-swap, in one statement. `max(coalesce(new, old),
            // coalesce(old, new))` keeps the later last_used_at and treats NULL as "never".
            update: format!(
                "UPDATE {tokens} SET name = ?, description = ?, owner = ?, created_by = ?, \
                 created_at = ?, updated_at = ?, secret_issued_at = ?, expires_at = ?, \
                 status = ?, all_projects = ?, metadata = ?, digest = ?, key_version = ?, \
                 allowed_ips = ?, expiry_notice_window = ?, expiry_notice_expires_at = ?, \
                 last_used_at = max(coalesce(?, last_used_at), coalesce(last_used_at, ?)), \
                 version = version + 1 \
                 WHERE id = ? AND version = ?"
            ),
            exists: format!("SELECT 1 FROM {tokens} WHERE id = ?"),
            delete_scopes: format!("DELETE FROM {scopes} WHERE token_id = ?"),
            delete_projects: format!("DELETE FROM {projects} WHERE token_id = ?"),
            delete_retired: format!("DELETE FROM {retired} WHERE token_id = ?"),
            delete: format!("DELETE FROM {tokens} WHERE id = ?"),
            touch: format!(
                "UPDATE {tokens} SET last_used_at = ?1 \
                 WHERE id = ?2 AND (last_used_at IS NULL OR last_used_at < ?1)"
            ),
            // A no-op update on conflict, so that the row kept is returned either way.
            claim_fingerprint: format!(
                "INSERT INTO {p}server_keys (version, fingerprint) VALUES (?1, ?2) \
                 ON CONFLICT (version) DO UPDATE SET version = excluded.version \
                 RETURNING fingerprint"
            ),
            prunable: format!("SELECT t.id FROM {tokens} t WHERE {prunable} LIMIT ?2"),
            count_prunable: format!("SELECT count(*) FROM {tokens} t WHERE {prunable}"),
            prune_children: [&scopes, &projects, &retired].map(|child| {
                format!("DELETE FROM {child} WHERE token_id IN (SELECT value FROM json_each(?))")
            }),
            prune: format!("DELETE FROM {tokens} WHERE id IN (SELECT value FROM json_each(?))"),
            migrations: format!("{p}schema_migrations"),
            scopes,
            projects,
            retired,
        }
    }
}

impl SqliteStore {
    /// The default table prefix.
    pub const DEFAULT_TABLE_PREFIX: &str = "keygate_";

    /// How long a connection waits for the database lock before failing (set by
    /// [`SqliteStore::connect`]).
    pub const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

    /// A store over `pool`, with the default table prefix `keygate_`.
    ///
    /// For concurrent writers the pool's connections should use WAL mode and a busy
    /// timeout, as [`connect`](Self::connect) sets up.
    pub fn new(pool: SqlitePool) -> Self {
        SqliteStore {
            breaker: Breaker::new(OutagePolicy::default(), pool_probe(pool.clone())),
            pool,
            prefix: SqliteStore::DEFAULT_TABLE_PREFIX.into(),
            sql: Arc::new(Statements::new(SqliteStore::DEFAULT_TABLE_PREFIX)),
        }
    }

    /// Sets how the store behaves when the database cannot be used (default
    /// [`OutagePolicy::default`]: verification reads answer within 250 ms, for instance when
    /// another process holds the database lock, and at once while the database is known to
    /// be unusable). See [`crate::store::outage`].
    pub fn with_outage_policy(mut self, policy: OutagePolicy) -> Self {
        self.breaker = Breaker::new(policy, pool_probe(self.pool.clone()));
        self
    }

    /// Opens (creating it if missing) the SQLite database at `url` (`sqlite:path` or
    /// `sqlite://path`), in WAL mode with a [`SqliteStore::BUSY_TIMEOUT`], and makes a store over it.
    ///
    /// An in-memory database (`sqlite::memory:`) lives in one connection, so its pool
    /// holds exactly one connection, kept open for the pool's lifetime.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        let options = SqliteConnectOptions::from_str(url).map_err(StoreError::backend)?;
        if url.contains(":memory:") || url.contains("mode=memory") {
            let pool = SqlitePoolOptions::new()
                .max_connections(1)
                .min_connections(1)
                .idle_timeout(None)
                .max_lifetime(None)
                .acquire_timeout(SqliteStore::BUSY_TIMEOUT)
                .connect_with(
                    options
                        .busy_timeout(SqliteStore::BUSY_TIMEOUT)
                        .foreign_keys(true),
                )
                .await
                .map_err(StoreError::backend)?;
            return Ok(Self::new(pool));
        }
        Self::connect_with(options).await
    }

    /// Like [`connect`](Self::connect), for a file path.
    pub async fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        Self::connect_with(SqliteConnectOptions::new().filename(path)).await
    }

    async fn connect_with(options: SqliteConnectOptions) -> Result<Self, StoreError> {
        let options = options
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(SqliteStore::BUSY_TIMEOUT)
            .foreign_keys(true);
        let pool = SqlitePoolOptions::new()
            .acquire_timeout(SqliteStore::BUSY_TIMEOUT)
            .connect_with(options)
            .await
            .map_err(StoreError::backend)?;
        Ok(Self::new(pool))
    }

    /// Uses `prefix` for keygate's table names instead of `keygate_` (e.g. `tenant_a_`).
    ///
    /// The prefix is up to 40 characters from `a-z`, `0-9` and `_`, starting with a letter
    /// or `_` (or empty); anything else is refused, so a prefix can never inject SQL.
    pub fn with_table_prefix(mut self, prefix: &str) -> Result<Self, Error> {
        check_ident(prefix, true).map_err(|reason| Error::InvalidField {
            field: "table prefix",
            reason,
        })?;
        self.prefix = prefix.into();
        self.sql = Arc::new(Statements::new(prefix));
        Ok(self)
    }

    /// The pool.
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    /// The table prefix.
    pub fn table_prefix(&self) -> &str {
        &self.prefix
    }

    /// Creates or upgrades keygate's tables: applies, in order and in one transaction, the
    /// embedded migrations the database has not recorded in `{prefix}schema_migrations`.
    /// Idempotent, and safe to run from several processes at once.
    ///
    /// Refuses (changing nothing) a database whose recorded version is newer than this
    /// build knows.
    ///
    /// Migration 3 rebuilds the tokens table, which SQLite allows only with foreign key
    /// enforcement off: `migrate` switches it off on the one connection it migrates with
    /// (outside the transaction, the only place SQLite allows), checks keygate's foreign
    /// keys before it commits, and switches enforcement back on before the connection
    /// returns to the pool (or closes the connection if that fails).
    pub async fn migrate(&self) -> Result<(), StoreError> {
        let mut conn = self.pool.acquire().await.map_err(StoreError::backend)?;
        let enforced: i64 = sqlx::query_scalar("PRAGMA foreign_keys")
            .fetch_one(&mut *conn)
            .await
            .map_err(StoreError::backend)?;
        if enforced != 0 {
            sqlx::query("PRAGMA foreign_keys = OFF")
                .execute(&mut *conn)
                .await
                .map_err(StoreError::backend)?;
        }
        let migrated = self.migrate_on(&mut conn).await;
        if enforced != 0 {
            // Runs after the rollback of a failed migration (the connection's commands run
            // in order); read back, since the pragma is silently ignored inside a
            // transaction.
            let restored = async {
                sqlx::query("PRAGMA foreign_keys = ON")
                    .execute(&mut *conn)
                    .await?;
                sqlx::query_scalar::<_, i64>("PRAGMA foreign_keys")
                    .fetch_one(&mut *conn)
                    .await
            }
            .await;
            if !matches!(restored, Ok(1)) {
                // Never hand a connection without enforcement back to the pool.
                conn.close_on_drop();
            }
        }
        migrated
    }

    async fn migrate_on(&self, conn: &mut sqlx::SqliteConnection) -> Result<(), StoreError> {
        let mut tx = sqlx::Connection::begin_with(conn, "BEGIN IMMEDIATE")
            .await
            .map_err(StoreError::backend)?;
        let table = &self.sql.migrations;
        if apply_migrations::<Sqlite>(&mut tx, table, &self.prefix).await? == 0 {
            // Up to date: nothing to check or commit.
            return Ok(());
        }
        // Enforcement was off: check what it would have refused.
        for child in [&self.sql.scopes, &self.sql.projects, &self.sql.retired] {
            let violation = sqlx::query(&format!("PRAGMA foreign_key_check({child})"))
                .fetch_optional(&mut *tx)
                .await
                .map_err(StoreError::backend)?;
            if violation.is_some() {
                return Err(foreign_key_violation(child));
            }
        }
        tx.commit().await.map_err(StoreError::backend)
    }

    /// Tells a failed compare-and-swap apart: `Conflict` if the record exists.
    async fn conflict_or_not_found(&self, id: &TokenId) -> StoreError {
        let exists = sqlx::query(&self.sql.exists).bind(id.as_str());
        conflict_or_not_found(&self.pool, exists).await
    }

    async fn write_children(
        &self,
        tx: &mut sqlx::SqliteConnection,
        record: &TokenRecord,
    ) -> Result<(), StoreError> {
        for scope in record.scopes.iter() {
            sqlx::query(&self.sql.insert_scope)
                .bind(record.id.as_str())
                .bind(scope.as_str())
                .bind(micros(record.created_at))
                .execute(&mut *tx)
                .await
                .map_err(StoreError::backend)?;
        }
        if let Projects::Only(set) = &record.projects {
            for project in set {
                sqlx::query(&self.sql.insert_project)
                    .bind(record.id.as_str())
                    .bind(project.as_str())
                    .execute(&mut *tx)
                    .await
                    .map_err(StoreError::backend)?;
            }
        }
        for (position, retired) in record.retired.iter().enumerate() {
            let position =
                i64::try_from(position).map_err(|_| StoreError::backend(RangeError("retired")))?;
            sqlx::query(&self.sql.insert_retired)
                .bind(record.id.as_str())
                .bind(position)
                .bind(&retired.digest.digest.as_bytes()[..])
                .bind(i64::from(retired.digest.key_version))
                .bind(micros(retired.valid_until))
                .execute(&mut *tx)
                .await
                .map_err(StoreError::backend)?;
        }
        Ok(())
    }

    /// Deletes the child rows of `id` (scopes, projects, retired secrets).
    async fn delete_children(
        &self,
        tx: &mut sqlx::SqliteConnection,
        id: &TokenId,
    ) -> Result<(), StoreError> {
        for stmt in [
            &self.sql.delete_scopes,
            &self.sql.delete_projects,
            &self.sql.delete_retired,
        ] {
            sqlx::query(stmt)
                .bind(id.as_str())
                .execute(&mut *tx)
                .await
                .map_err(StoreError::backend)?;
        }
        Ok(())
    }
}

impl SqliteStore {
    /// The conditions of [`Reach::contains`], on the inner query's `t`.
    fn push_reach(&self, q: &mut QueryBuilder<'_, Sqlite>, reach: &Reach) {
        if let Some(owner) = &reach.owner {
            q.push(" AND t.owner = ").push_bind(owner.clone());
        }
        if !reach.scopes.is_admin() {
            // No scope of the token escapes the reach: each is one of the reach's exact
            // scopes, or extends one of its `p:*` prefixes by at least one character.
            q.push(" AND NOT EXISTS (SELECT 1 FROM ")
                .push(&self.sql.scopes)
                .push(" rs WHERE rs.token_id = t.id AND NOT (0");
            let (exact, prefixes) = split_scopes(&reach.scopes);
            if !exact.is_empty() {
                q.push(" OR rs.scope IN (");
                let mut list = q.separated(", ");
                for scope in exact {
                    list.push_bind(scope.to_owned());
                }
                q.push(")");
            }
            for prefix in prefixes {
                let len = prefix.len() as i64;
                q.push(" OR (substr(rs.scope, 1, ")
                    .push_bind(len)
                    .push(") = ")
                    .push_bind(prefix.to_owned())
                    .push(" AND length(rs.scope) > ")
                    .push_bind(len)
                    .push(")");
            }
            q.push("))");
        }
        if let Projects::Only(set) = &reach.projects {
            // Not all projects, and no project outside the set.
            q.push(" AND t.all_projects = 0 AND NOT EXISTS (SELECT 1 FROM ")
                .push(&self.sql.projects)
                .push(" rp WHERE rp.token_id = t.id");
            if !set.is_empty() {
                q.push(" AND rp.project NOT IN (");
                let mut list = q.separated(", ");
                for project in set {
                    list.push_bind(project.as_str().to_owned());
                }
                q.push(")");
            }
            q.push(")");
        }
    }
}

/// The schema upgrade left a child row without its token.
fn foreign_key_violation(table: &str) -> StoreError {
    StoreError::backend(MigrationError(format!(
        "schema upgrade refused: `{table}` holds a row whose token does not exist"
    )))
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct MigrationError(String);

fn micros(t: DateTime<Utc>) -> i64 {
    t.timestamp_micros()
}

fn from_micros(v: i64, column: &'static str) -> Result<DateTime<Utc>, StoreError> {
    DateTime::from_timestamp_micros(v).ok_or_else(|| bad_row(column))
}

fn opt_from_micros(
    v: Option<i64>,
    column: &'static str,
) -> Result<Option<DateTime<Utc>>, StoreError> {
    v.map(|v| from_micros(v, column)).transpose()
}

impl TokenRow for SqliteRow {
    fn instant(&self, column: &'static str) -> Result<DateTime<Utc>, StoreError> {
        from_micros(col(self, column)?, column)
    }

    fn opt_instant(&self, column: &'static str) -> Result<Option<DateTime<Utc>>, StoreError> {
        opt_from_micros(col(self, column)?, column)
    }

    fn scopes(&self) -> Result<ScopeSet, StoreError> {
        let scopes: Json<Vec<String>> = col(self, "scopes")?;
        scopes
            .0
            .iter()
            .map(Scope::new)
            .collect::<Result<ScopeSet, _>>()
            .map_err(|_| bad_row("scope"))
    }

    fn projects(&self) -> Result<Projects, StoreError> {
        if col::<_, i64>(self, "all_projects")? != 0 {
            return Ok(Projects::All);
        }
        let list: Json<Vec<String>> = col(self, "projects")?;
        list.0
            .iter()
            .map(ProjectId::new)
            .collect::<Result<BTreeSet<_>, _>>()
            .map(Projects::Only)
            .map_err(|_| bad_row("project"))
    }

    fn allowed_ips(&self) -> Result<Vec<IpNet>, StoreError> {
        let list: Json<Vec<String>> = col(self, "allowed_ips")?;
        parse_allowed_ips(&list.0)
    }

    fn retired(&self) -> Result<Vec<RetiredSecret>, StoreError> {
        // `[[hex digest, key version, valid until], ...]` in position order.
        let retired: Json<Vec<(String, i64, i64)>> = col(self, "retired")?;
        retired
            .0
            .into_iter()
            .map(|(d, k, until)| {
                let bytes = hex::decode(d).map_err(|_| bad_row("retired digest"))?;
                Ok(RetiredSecret {
                    digest: StoredDigest {
                        digest: digest_of(&bytes, "retired digest")?,
                        key_version: key_version_from_i64(k, "retired key_version")?,
                    },
                    valid_until: from_micros(until, "retired valid_until")?,
                })
            })
            .collect()
    }
}

type SqliteQuery<'q> = sqlx::query::Query<'q, Sqlite, sqlx::sqlite::SqliteArguments<'q>>;

/// Binds the record's columns in the order of `insert` (without `id` first when
/// `with_id` is false, for `update`).
fn bind_record<'q>(q: SqliteQuery<'q>, r: &'q TokenRecord) -> SqliteQuery<'q> {
    q.bind(r.name.as_str())
        .bind(r.description.as_str())
        .bind(r.owner.as_str())
        .bind(r.created_by.as_str())
        .bind(micros(r.created_at))
        .bind(micros(r.updated_at))
        .bind(micros(r.secret_issued_at))
        .bind(r.expiry.at().map(micros))
        .bind(r.status.as_str())
        .bind(matches!(r.projects, Projects::All) as i64)
        .bind(Json(&r.metadata))
        .bind(&r.digest.digest.as_bytes()[..])
        .bind(i64::from(r.digest.key_version))
        .bind(Json(
            r.allowed_ips
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>(),
        ))
        .bind(super::sql::expiry_notice_window(r))
        .bind(r.expiry_notice.as_deref().map(|n| micros(n.expires_at)))
}

impl Dialect for Sqlite {
    type Time = i64;
    fn time(at: DateTime<Utc>) -> i64 {
        micros(at)
    }
    // SQLite's LIKE ignores ASCII case only, as the reference semantics do.
    const FOLDED_NAME: &'static str = "t.name";
    const MIGRATIONS: [&'static str; HISTORY.len()] = [
        include_str!("migrations/sqlite/0001_create_tokens.sql"),
        include_str!("migrations/sqlite/0002_index_digests.sql"),
        include_str!("migrations/sqlite/0003_retired_secrets.sql"),
        include_str!("migrations/sqlite/0004_index_names.sql"),
        include_str!("migrations/sqlite/0005_server_keys.sql"),
        include_str!("migrations/sqlite/0006_allowed_ips.sql"),
        include_str!("migrations/sqlite/0007_expiry_notice.sql"),
    ];
    const PLACEHOLDER: &'static str = "{prefix}";
    const CREATE_RECORDS: &'static str = "CREATE TABLE IF NOT EXISTS {table} \
        (version INTEGER NOT NULL PRIMARY KEY, name TEXT NOT NULL, applied_at INTEGER NOT NULL)";
    const INSERT_RECORD: &'static str =
        "INSERT INTO {table} (version, name, applied_at) VALUES (?, ?, ?)";
    fn bind_applied_at<'q>(q: SqliteQuery<'q>) -> SqliteQuery<'q> {
        q.bind(Utc::now().timestamp_micros())
    }
}

/// The operations, before the outage policy ([`Breaker`]) is applied.
impl SqliteStore {
    async fn db_insert(&self, record: &TokenRecord) -> Result<(), StoreError> {
        let version = version_to_i64(record.version)?;
        let mut tx = self
            .pool
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(StoreError::backend)?;
        let q = sqlx::query(&self.sql.insert).bind(record.id.as_str());
        bind_record(q, record)
            .bind(record.last_used_at.map(micros))
            .bind(version)
            .execute(&mut *tx)
            .await
            .map_err(insert_error)?;
        self.write_children(&mut tx, record).await?;
        tx.commit().await.map_err(StoreError::backend)
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
        let new_version = record.version + 1;
        version_to_i64(new_version)?;
        let last_used = record.last_used_at.map(micros);
        let mut tx = self
            .pool
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(StoreError::backend)?;
        let q = sqlx::query(&self.sql.update);
        let done = bind_record(q, record)
            .bind(last_used)
            .bind(last_used)
            .bind(record.id.as_str())
            .bind(expected)
            .execute(&mut *tx)
            .await
            .map_err(StoreError::backend)?;
        if done.rows_affected() == 0 {
            // Only the error path reads again, to tell the two failures apart.
            let exists = sqlx::query(&self.sql.exists)
                .bind(record.id.as_str())
                .fetch_optional(&mut *tx)
                .await
                .map_err(StoreError::backend)?
                .is_some();
            return Err(if exists {
                StoreError::Conflict
            } else {
                StoreError::NotFound
            });
        }
        self.delete_children(&mut tx, &record.id).await?;
        self.write_children(&mut tx, record).await?;
        tx.commit().await.map_err(StoreError::backend)?;
        Ok(new_version)
    }

    async fn db_delete(&self, id: &TokenId) -> Result<bool, StoreError> {
        let mut tx = self
            .pool
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(StoreError::backend)?;
        self.delete_children(&mut tx, id).await?;
        let done = sqlx::query(&self.sql.delete)
            .bind(id.as_str())
            .execute(&mut *tx)
            .await
            .map_err(StoreError::backend)?;
        tx.commit().await.map_err(StoreError::backend)?;
        Ok(done.rows_affected() > 0)
    }

    async fn db_list(&self, filter: &TokenFilter, page: &PageRequest) -> Result<Page, StoreError> {
        // The listing order's columns: the scope row's copy when listing by scope.
        let (mut q, order) = match &filter.scope {
            Some(scope) => {
                let mut q = QueryBuilder::<Sqlite>::new(&self.sql.list_by_scope);
                q.push(" WHERE s.scope = ").push_bind(scope.as_str());
                (q, ("s.created_at", "s.token_id"))
            }
            None => {
                let mut q = QueryBuilder::<Sqlite>::new(&self.sql.list);
                q.push(" WHERE 1 = 1");
                (q, ("t.created_at", "t.id"))
            }
        };
        push_filter(&mut q, filter);
        if let Some(project) = &filter.project {
            q.push(" AND (t.all_projects = 1 OR t.id IN (SELECT token_id FROM ")
                .push(&self.sql.projects)
                .push(" WHERE project = ")
                .push_bind(project.as_str())
                .push("))");
        }
        if let Some(reach) = &filter.within {
            self.push_reach(&mut q, reach);
        }
        push_page(&mut q, page, order);
        q.push(") ORDER BY o.created_at DESC, o.id DESC");
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
            .bind(micros(at))
            .bind(id.as_str())
            .execute(&self.pool)
            .await
            .map_err(StoreError::backend)?;
        Ok(())
    }
}

/// Pruning, before the outage policy: one `BEGIN IMMEDIATE` transaction per batch, which
/// selects the batch's ids and deletes their child rows and then their tokens, so that no
/// batch is ever half-deleted and the write lock is held for one batch only.
impl SqliteStore {
    async fn db_prune(&self, cutoff: DateTime<Utc>, limit: u64) -> Result<u64, StoreError> {
        if limit == 0 {
            return Ok(0);
        }
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let mut tx = self
            .pool
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(StoreError::backend)?;
        let ids: Vec<String> = sqlx::query_scalar(&self.sql.prunable)
            .bind(micros(cutoff))
            .bind(limit)
            .fetch_all(&mut *tx)
            .await
            .map_err(StoreError::backend)?;
        if ids.is_empty() {
            return Ok(0);
        }
        let ids = Json(ids);
        for stmt in &self.sql.prune_children {
            sqlx::query(stmt)
                .bind(&ids)
                .execute(&mut *tx)
                .await
                .map_err(StoreError::backend)?;
        }
        let done = sqlx::query(&self.sql.prune)
            .bind(&ids)
            .execute(&mut *tx)
            .await
            .map_err(StoreError::backend)?;
        tx.commit().await.map_err(StoreError::backend)?;
        Ok(done.rows_affected())
    }

    async fn db_count_prunable(&self, cutoff: DateTime<Utc>) -> Result<u64, StoreError> {
        let n: i64 = sqlx::query_scalar(&self.sql.count_prunable)
            .bind(micros(cutoff))
            .fetch_one(&self.pool)
            .await
            .map_err(StoreError::backend)?;
        u64::try_from(n).map_err(|_| bad_row("count"))
    }
}

super::sql::breaker_guarded_store!(SqliteStore);

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn prefixes_are_validated() {
        let pool = SqlitePoolOptions::new().connect_lazy_with(SqliteConnectOptions::new());
        let store = SqliteStore::new(pool);
        assert_eq!(store.table_prefix(), "keygate_");
        assert!(store.clone().with_table_prefix("a\"; drop").is_err());
        assert!(store.clone().with_table_prefix("Upper_").is_err());
        let s = store.with_table_prefix("tenant_a_").expect("valid prefix");
        assert_eq!(s.sql.migrations, "tenant_a_schema_migrations");
        assert!(s.sql.get.contains("FROM tenant_a_tokens o"));
    }
}
