//! What the SQL stores share, written once for both dialects.
//!
//! [`SqliteStore`](crate::SqliteStore) and [`PostgresStore`](crate::PostgresStore) differ in
//! their SQL text and in what truly differs between the databases: SQLite keeps scopes,
//! projects and retired secrets in child tables (and rebuilds a table to upgrade it),
//! PostgreSQL keeps them in arrays, notifies other instances with `LISTEN`/`NOTIFY`, and needs
//! its own timestamp decoder. So each store keeps its statements, its writes (`insert`,
//! `update`, `delete`, `touch`), its project, scope and reach conditions, and its set-up
//! around the migrations (SQLite's foreign-key switch and check, PostgreSQL's advisory lock
//! and schema). Everything else is here, once, as generic functions over `sqlx`'s database
//! and row types that run queries the stores have built and bound:
//!
//! - [`Dialect`], implemented for `sqlx::Sqlite` and `sqlx::Postgres` in their stores' files:
//!   the little the shared code must know about a dialect (how an instant is bound, the
//!   case-folded name, the migration scripts and the migration record table).
//! - [`TokenRow`], implemented for each row type: decodes the columns its dialect stores its
//!   own way (instants, scopes, projects, retired secrets); [`decode`] reads the rest and
//!   builds the record, every failure naming its column ([`bad_row`]), never a panic.
//! - [`fetch_record`] (`get`, `find_by_digest`), [`conflict_or_not_found`], and for `list`
//!   [`push_filter`], [`push_page`] and [`fetch_page`].
//! - [`HISTORY`] and [`apply_migrations`]: the schema history, and the runner that records
//!   it, refuses a newer schema and applies the missing scripts in the caller's transaction.
//! - [`breaker_guarded_store!`]: the [`TokenStore`] implementation of both stores, which runs
//!   each store's own `db_*` operation under its outage policy.
//!
//! sqlx states its trait implementations per backend, so generic code needs bounds: they are
//! kept out of sight by taking the executor and the bound query as type parameters (checked
//! where a store calls with its concrete types) and by [`Columns`], implemented for every row
//! type that can decode what it reads.
//!
//! Also here: identifier validation, LIKE escaping, range checks, error mapping, and
//! [`SqlStore`] / [`connect`], which pick a backend by URL.

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::query::Query;
use sqlx::types::Json;
use sqlx::{ColumnIndex, Decode, Encode, Executor, IntoArguments, QueryBuilder, Row, Type};

use super::{Cursor, Page, PageRequest, TokenFilter, TokenStore};
use crate::digest::{Digest, StoredDigest};
use crate::error::{Error, StoreError};
use crate::expiry::{Expiry, ExpiryNotice};
use crate::ip::IpNet;
use crate::record::{RetiredSecret, TokenRecord, TokenStatus};
use crate::scope::{Projects, ScopeSet};
use crate::token::TokenId;

/// Longest table prefix or schema name accepted.
pub(crate) const MAX_IDENT_LEN: usize = 40;

/// Accepts `[a-z_][a-z0-9_]*` up to [`MAX_IDENT_LEN`] bytes (and, if `allow_empty`, the
/// empty string). Such a name needs no quoting and cannot inject SQL, which is why schema
/// names and table prefixes are restricted to it.
pub(crate) fn check_ident(value: &str, allow_empty: bool) -> Result<(), &'static str> {
    if value.is_empty() {
        return if allow_empty {
            Ok(())
        } else {
            Err("must not be empty")
        };
    }
    if value.len() > MAX_IDENT_LEN {
        return Err("must be at most 40 characters");
    }
    let mut bytes = value.bytes();
    if !bytes
        .next()
        .is_some_and(|b| b.is_ascii_lowercase() || b == b'_')
    {
        return Err("must start with a lower-case letter or `_`");
    }
    if !bytes.all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_') {
        return Err("only lower-case letters, digits and `_` are allowed");
    }
    Ok(())
}

/// keygate's schema history: each migration's version and name. Each dialect has one
/// script per entry ([`Dialect::MIGRATIONS`]), embedded, holding [`Dialect::PLACEHOLDER`]
/// for the table prefix or schema, which is replaced by a validated identifier before it
/// runs. Migrations are history: a change to the schema is a new entry, never an edit.
pub(crate) const HISTORY: [(i64, &str); 7] = [
    (1, "create_tokens"),
    (2, "index_digests"),
    (3, "retired_secrets"),
    (4, "index_names"),
    (5, "server_keys"),
    (6, "allowed_ips"),
    (7, "expiry_notice"),
];

/// The database records a schema version this build does not know: refuse to touch it.
fn newer_schema(found: i64, known: i64) -> StoreError {
    StoreError::backend(SchemaError(format!(
        "the database holds keygate schema version {found}, newer than the {known} this \
         build knows; upgrade keygate"
    )))
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct SchemaError(String);

/// A stored row that does not decode into a [`TokenRecord`] (corrupt or foreign data).
/// Names the column, never its value.
#[derive(Debug, thiserror::Error)]
#[error("invalid token row: column `{0}` holds a value keygate cannot read")]
pub(crate) struct RowError(pub(crate) &'static str);

pub(crate) fn bad_row(column: &'static str) -> StoreError {
    StoreError::backend(RowError(column))
}

/// A value keygate cannot store (out of the database's integer range).
#[derive(Debug, thiserror::Error)]
#[error("cannot store token: `{0}` is out of range")]
pub(crate) struct RangeError(pub(crate) &'static str);

pub(crate) fn version_to_i64(version: u64) -> Result<i64, StoreError> {
    i64::try_from(version).map_err(|_| StoreError::backend(RangeError("version")))
}

pub(crate) fn version_from_i64(version: i64) -> Result<u64, StoreError> {
    u64::try_from(version).map_err(|_| bad_row("version"))
}

pub(crate) fn key_version_from_i64(version: i64, column: &'static str) -> Result<u32, StoreError> {
    u32::try_from(version).map_err(|_| bad_row(column))
}

/// A `LIKE` pattern (with `ESCAPE '\'`) matching names that contain `needle`, the needle
/// folded to ASCII lower case. `%`, `_` and `\` in the needle match themselves.
fn contains_pattern(needle: &str) -> String {
    let mut p = String::with_capacity(needle.len() + 2);
    p.push('%');
    for c in needle.chars() {
        if matches!(c, '%' | '_' | '\\') {
            p.push('\\');
        }
        p.push(c.to_ascii_lowercase());
    }
    p.push('%');
    p
}

/// The exact scopes of a reach, and the prefixes (with their final `:`) of its `p:*`
/// wildcards. Not for a set holding `*`, which grants everything.
pub(crate) fn split_scopes(scopes: &crate::scope::ScopeSet) -> (Vec<&str>, Vec<&str>) {
    let mut exact = Vec::new();
    let mut prefixes = Vec::new();
    for scope in scopes.iter() {
        match scope.as_str().strip_suffix('*') {
            Some(prefix) => prefixes.push(prefix),
            None => exact.push(scope.as_str()),
        }
    }
    (exact, prefixes)
}

/// Maps a sqlx error from an insert: a unique violation is [`StoreError::AlreadyExists`],
/// anything else a backend error keeping its source.
pub(crate) fn insert_error(e: sqlx::Error) -> StoreError {
    match e.as_database_error() {
        Some(db) if db.is_unique_violation() => StoreError::AlreadyExists,
        _ => StoreError::backend(e),
    }
}

/// Column `column` of `row` as a `T`; a missing column or a value that does not decode is
/// the column's [`bad_row`].
pub(crate) fn col<'r, R, T>(row: &'r R, column: &'static str) -> Result<T, StoreError>
where
    R: Row,
    &'static str: ColumnIndex<R>,
    T: Decode<'r, R::Database> + Type<R::Database>,
{
    row.try_get(column).map_err(|_| bad_row(column))
}

/// A 32-byte digest from `bytes`, or the column's [`bad_row`].
pub(crate) fn digest_of(bytes: &[u8], column: &'static str) -> Result<Digest, StoreError> {
    Digest::from_slice(bytes).ok_or_else(|| bad_row(column))
}

/// The columns both dialects store alike, through [`col`]: implemented for every row type
/// of a database that decodes these Rust types, so that generic code needs no sqlx bounds.
pub(crate) trait Columns {
    /// A text column.
    fn text(&self, column: &'static str) -> Result<&str, StoreError>;
    /// An integer column.
    fn int(&self, column: &'static str) -> Result<i64, StoreError>;
    /// A nullable integer column.
    fn opt_int(&self, column: &'static str) -> Result<Option<i64>, StoreError>;
    /// A blob (`bytea`) column.
    fn bytes(&self, column: &'static str) -> Result<&[u8], StoreError>;
    /// A JSON column holding a string map.
    fn json_map(&self, column: &'static str) -> Result<BTreeMap<String, String>, StoreError>;
}

impl<R> Columns for R
where
    R: Row,
    &'static str: ColumnIndex<R>,
    for<'r> &'r str: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> &'r [u8]: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> i64: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> Json<BTreeMap<String, String>>: Decode<'r, R::Database> + Type<R::Database>,
{
    fn text(&self, column: &'static str) -> Result<&str, StoreError> {
        col(self, column)
    }
    fn int(&self, column: &'static str) -> Result<i64, StoreError> {
        col(self, column)
    }
    fn opt_int(&self, column: &'static str) -> Result<Option<i64>, StoreError> {
        col(self, column)
    }
    fn bytes(&self, column: &'static str) -> Result<&[u8], StoreError> {
        col(self, column)
    }
    fn json_map(&self, column: &'static str) -> Result<BTreeMap<String, String>, StoreError> {
        col::<_, Json<_>>(self, column).map(|m| m.0)
    }
}

/// A row of a token query, as its dialect stores what the dialects store differently.
pub(crate) trait TokenRow: Columns {
    /// A timestamp column.
    fn instant(&self, column: &'static str) -> Result<DateTime<Utc>, StoreError>;
    /// A nullable timestamp column.
    fn opt_instant(&self, column: &'static str) -> Result<Option<DateTime<Utc>>, StoreError>;
    /// The token's scopes.
    fn scopes(&self) -> Result<ScopeSet, StoreError>;
    /// The token's projects.
    fn projects(&self) -> Result<Projects, StoreError>;
    /// The token's retired secrets, newest first.
    fn retired(&self) -> Result<Vec<RetiredSecret>, StoreError>;
    /// The token's allowed IP ranges, as stored (normalised).
    fn allowed_ips(&self) -> Result<Vec<IpNet>, StoreError>;
}

/// Allowed IP ranges from their stored text forms; anything else (or a range that is not
/// normalised, which keygate never writes) is the column's [`bad_row`].
pub(crate) fn parse_allowed_ips<I, S>(items: I) -> Result<Vec<IpNet>, StoreError>
where
    I: IntoIterator<Item = S>,
    S: AsRef<str>,
{
    let list = items
        .into_iter()
        .map(|s| s.as_ref().parse::<IpNet>())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| bad_row("allowed_ips"))?;
    if crate::ip::normalize(&list) != list {
        return Err(bad_row("allowed_ips"));
    }
    Ok(list)
}

/// Decodes a token row; a value keygate cannot read is its column's [`bad_row`], never a
/// panic.
fn decode<R: TokenRow>(row: &R) -> Result<TokenRecord, StoreError> {
    let id = TokenId::new(row.text("id")?).map_err(|_| bad_row("id"))?;
    let status = row
        .text("status")?
        .parse::<TokenStatus>()
        .map_err(|_| bad_row("status"))?;
    let scopes = row.scopes()?;
    let projects = row.projects()?;
    let metadata = row.json_map("metadata")?;
    let digest = StoredDigest {
        digest: digest_of(row.bytes("digest")?, "digest")?,
        key_version: key_version_from_i64(row.int("key_version")?, "key_version")?,
    };
    let retired = row.retired()?;
    let allowed_ips = row.allowed_ips()?;
    let expiry_notice = expiry_notice_of(
        row.opt_int(EXPIRY_NOTICE_WINDOW)?,
        row.opt_instant(EXPIRY_NOTICE_EXPIRES_AT)?,
    )?;
    Ok(TokenRecord {
        id,
        name: row.text("name")?.to_owned(),
        description: row.text("description")?.to_owned(),
        owner: row.text("owner")?.to_owned(),
        created_by: row.text("created_by")?.to_owned(),
        created_at: row.instant("created_at")?,
        updated_at: row.instant("updated_at")?,
        secret_issued_at: row.instant("secret_issued_at")?,
        expiry: Expiry::from(row.opt_instant("expires_at")?),
        status,
        scopes,
        projects,
        metadata,
        allowed_ips,
        digest,
        retired,
        expiry_notice,
        last_used_at: row.opt_instant("last_used_at")?,
        version: version_from_i64(row.int("version")?)?,
    })
}

/// The columns of [`TokenRecord::expiry_notice`].
pub(crate) const EXPIRY_NOTICE_WINDOW: &str = "expiry_notice_window";
pub(crate) const EXPIRY_NOTICE_EXPIRES_AT: &str = "expiry_notice_expires_at";

/// The expiry notice from its two columns: both NULL, or a window of whole seconds and an
/// instant; anything else is a [`bad_row`].
fn expiry_notice_of(
    window: Option<i64>,
    expires_at: Option<DateTime<Utc>>,
) -> Result<Option<Box<ExpiryNotice>>, StoreError> {
    match (window, expires_at) {
        (None, None) => Ok(None),
        (Some(secs), Some(expires_at)) => u64::try_from(secs)
            .ok()
            .map(std::time::Duration::from_secs)
            .map(|window| Some(Box::new(ExpiryNotice { window, expires_at })))
            .ok_or_else(|| bad_row(EXPIRY_NOTICE_WINDOW)),
        _ => Err(bad_row(EXPIRY_NOTICE_WINDOW)),
    }
}

/// The expiry notice's window as stored: whole seconds.
pub(crate) fn expiry_notice_window(r: &TokenRecord) -> Option<i64> {
    r.expiry_notice
        .as_deref()
        .map(|n| i64::try_from(n.window.as_secs()).unwrap_or(i64::MAX))
}

/// Runs `query` (a `get` or `find_by_digest`, bound) and decodes the record it finds.
pub(crate) async fn fetch_record<'q, 'c, DB, A, E>(
    executor: E,
    query: sqlx::query::Query<'q, DB, A>,
) -> Result<Option<Arc<TokenRecord>>, StoreError>
where
    DB: sqlx::Database<Row: TokenRow>,
    A: 'q + IntoArguments<'q, DB>,
    E: Executor<'c, Database = DB>,
{
    let row = query
        .fetch_optional(executor)
        .await
        .map_err(StoreError::backend)?;
    row.map(|r| decode(&r).map(Arc::new)).transpose()
}

/// Runs `claim` (a store's `claim_key_fingerprint` statement, bound: an insert-if-absent
/// returning the kept `fingerprint`) and decodes the fingerprint kept.
pub(crate) async fn claim_fingerprint<'q, 'c, DB, A, E>(
    executor: E,
    claim: sqlx::query::Query<'q, DB, A>,
) -> Result<Option<Digest>, StoreError>
where
    DB: sqlx::Database<Row: Columns>,
    A: 'q + IntoArguments<'q, DB>,
    E: Executor<'c, Database = DB>,
{
    let row = claim
        .fetch_one(executor)
        .await
        .map_err(StoreError::backend)?;
    digest_of(row.bytes("fingerprint")?, "fingerprint").map(Some)
}

/// Tells a failed compare-and-swap apart by running `exists` (the record's existence
/// check, bound): `Conflict` if the record exists, `NotFound` if not.
pub(crate) async fn conflict_or_not_found<'q, 'c, DB, A, E>(
    executor: E,
    exists: sqlx::query::Query<'q, DB, A>,
) -> StoreError
where
    DB: sqlx::Database,
    A: 'q + IntoArguments<'q, DB>,
    E: Executor<'c, Database = DB>,
{
    match exists.fetch_optional(executor).await {
        Ok(Some(_)) => StoreError::Conflict,
        Ok(None) => StoreError::NotFound,
        Err(e) => StoreError::backend(e),
    }
}

/// What the shared code needs to know about a dialect beyond its row type. Implemented for
/// `sqlx::Sqlite` and `sqlx::Postgres`, each in its store's file, next to its SQL.
pub(crate) trait Dialect: sqlx::Database<Row: TokenRow> {
    /// How an instant is bound: microseconds since the Unix epoch (SQLite) or a
    /// `timestamptz` (PostgreSQL).
    type Time: for<'q> Encode<'q, Self> + Type<Self> + Send + 'static;
    /// `at` as bound.
    fn time(at: DateTime<Utc>) -> Self::Time;
    /// `t.name` folded to ASCII lower case: what `name_contains` matches with `LIKE`.
    const FOLDED_NAME: &'static str;
    /// The script of each [`HISTORY`] entry, in order.
    const MIGRATIONS: [&'static str; HISTORY.len()];
    /// What the scripts call the table prefix or the schema.
    const PLACEHOLDER: &'static str;
    /// Creates the table `{table}` recording the applied migrations, if missing.
    const CREATE_RECORDS: &'static str;
    /// Records a migration in `{table}`: binds the version, the name, then what
    /// [`bind_applied_at`](Self::bind_applied_at) binds.
    const INSERT_RECORD: &'static str;
    /// Binds the rest of [`INSERT_RECORD`](Self::INSERT_RECORD) after version and name.
    fn bind_applied_at<'q>(
        q: Query<'q, Self, Self::Arguments<'q>>,
    ) -> Query<'q, Self, Self::Arguments<'q>>;
}

/// Applies on `conn`, in the caller's transaction, the migrations the record table `table`
/// does not list, each script with [`Dialect::PLACEHOLDER`] replaced by `ident`, and
/// records each. Returns how many it applied; the commit is the caller's.
///
/// Refuses (applying nothing) a database whose recorded version is newer than this build
/// knows.
pub(crate) async fn apply_migrations<DB: Dialect>(
    conn: &mut DB::Connection,
    table: &str,
    ident: &str,
) -> Result<usize, StoreError>
where
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'q> DB::Arguments<'q>: IntoArguments<'q, DB>,
    for<'q> i64: Encode<'q, DB> + Type<DB>,
    for<'q> &'q str: Encode<'q, DB> + Type<DB>,
    (Option<i64>,): for<'r> sqlx::FromRow<'r, DB::Row>,
{
    sqlx::query(&DB::CREATE_RECORDS.replace("{table}", table))
        .execute(&mut *conn)
        .await
        .map_err(StoreError::backend)?;
    let current: Option<i64> = sqlx::query_scalar(&format!("SELECT max(version) FROM {table}"))
        .fetch_one(&mut *conn)
        .await
        .map_err(StoreError::backend)?;
    let current = current.unwrap_or(0);
    let known = HISTORY.last().map_or(0, |m| m.0);
    if current > known {
        return Err(newer_schema(current, known));
    }
    let insert = DB::INSERT_RECORD.replace("{table}", table);
    let mut applied = 0;
    for (&(version, name), script) in HISTORY.iter().zip(DB::MIGRATIONS) {
        if version <= current {
            continue;
        }
        let sql = script.replace(DB::PLACEHOLDER, ident);
        // No arguments: the statements of the migration run as one script.
        sqlx::Executor::execute(&mut *conn, sql.as_str())
            .await
            .map_err(StoreError::backend)?;
        DB::bind_applied_at(sqlx::query(&insert).bind(version).bind(name))
            .execute(&mut *conn)
            .await
            .map_err(StoreError::backend)?;
        applied += 1;
    }
    Ok(applied)
}

/// Pushes the conditions of `filter` that both dialects write alike, on the listing's `t`:
/// `name_contains`, `owner`, `created_by`, `status` and the expiry window. Projects, scopes
/// and the reach are the dialect's.
pub(crate) fn push_filter<'a, DB: Dialect>(q: &mut QueryBuilder<'a, DB>, filter: &'a TokenFilter)
where
    &'a str: Encode<'a, DB> + Type<DB>,
    String: Encode<'a, DB> + Type<DB>,
    i64: Encode<'a, DB> + Type<DB>,
{
    if let Some(text) = &filter.name_contains {
        // ASCII case folding only, as the reference semantics.
        q.push(" AND ")
            .push(DB::FOLDED_NAME)
            .push(" LIKE ")
            .push_bind(contains_pattern(text))
            .push(" ESCAPE '\\'");
    }
    if let Some(owner) = &filter.owner {
        q.push(" AND t.owner = ").push_bind(owner.as_str());
    }
    if let Some(creator) = &filter.created_by {
        q.push(" AND t.created_by = ").push_bind(creator.as_str());
    }
    if let Some(status) = filter.status {
        q.push(" AND t.status = ").push_bind(status.as_str());
    }
    if let Some(before) = filter.expires_before {
        q.push(" AND t.expires_at < ").push_bind(DB::time(before));
    }
    if let Some(after) = filter.expires_after {
        q.push(" AND (t.expires_at IS NULL OR t.expires_at > ")
            .push_bind(DB::time(after))
            .push(")");
    }
    if let Some(version) = filter.key_version {
        q.push(" AND t.key_version = ")
            .push_bind(i64::from(version));
    }
}

/// Pushes the page's cursor condition, the listing order and one row more than the limit
/// (which tells whether more follow), `order` naming the `(created_at, id)` columns the
/// query walks.
pub(crate) fn push_page<'a, DB: Dialect>(
    q: &mut QueryBuilder<'a, DB>,
    page: &'a PageRequest,
    order: (&str, &str),
) where
    &'a str: Encode<'a, DB> + Type<DB>,
    i64: Encode<'a, DB> + Type<DB>,
{
    if let Some(Cursor { created_at, id }) = &page.after {
        q.push(format_args!(" AND ({}, {}) < (", order.0, order.1))
            .push_bind(DB::time(*created_at))
            .push(", ")
            .push_bind(id.as_str())
            .push(")");
    }
    q.push(format_args!(
        " ORDER BY {} DESC, {} DESC LIMIT ",
        order.0, order.1
    ))
    .push_bind(page.effective_limit() as i64 + 1);
}

/// Runs a listing built with [`push_page`] and makes the page of its rows.
pub(crate) async fn fetch_page<'q, 'c, DB, A, E>(
    executor: E,
    query: sqlx::query::Query<'q, DB, A>,
    page: &PageRequest,
) -> Result<Page, StoreError>
where
    DB: sqlx::Database<Row: TokenRow>,
    A: 'q + IntoArguments<'q, DB>,
    E: Executor<'c, Database = DB>,
{
    let limit = page.effective_limit();
    let rows = query
        .fetch_all(executor)
        .await
        .map_err(StoreError::backend)?;
    let more = rows.len() > limit;
    let items = rows
        .iter()
        .take(limit)
        .map(decode)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Page::new(items, more))
}

/// A SQL store chosen at run time by [`SqlStore::connect`].
///
/// Implements [`TokenStore`] by delegating to the backend; match on it to reach
/// backend-specific API such as
/// [`PostgresStore::spawn_invalidation_listener`](crate::PostgresStore::spawn_invalidation_listener).
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum SqlStore {
    /// A SQLite database.
    #[cfg(feature = "sqlite")]
    Sqlite(super::sqlite::SqliteStore),
    /// A PostgreSQL database.
    #[cfg(feature = "postgres")]
    Postgres(super::postgres::PostgresStore),
}

/// Which backend a database URL names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Backend {
    Sqlite,
    Postgres,
}

fn backend_of(url: &str) -> Result<Backend, Error> {
    if url.starts_with("sqlite:") {
        return Ok(Backend::Sqlite);
    }
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        return Ok(Backend::Postgres);
    }
    // `scheme:` per RFC 3986 (two or more characters, so `C:\...` stays a path).
    let scheme = url.split_once(':').map(|(s, _)| s).filter(|s| {
        s.len() > 1
            && s.starts_with(|c: char| c.is_ascii_alphabetic())
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
    });
    match scheme {
        Some(_) => Err(Error::InvalidConfig(
            "unsupported database URL scheme: use sqlite:, postgres:// or a file path",
        )),
        None if url.trim().is_empty() => Err(Error::InvalidConfig("empty database URL")),
        None => Ok(Backend::Sqlite),
    }
}

impl SqlStore {
    /// Connects to the database `url` names and applies keygate's migrations.
    ///
    /// - `sqlite:path`, `sqlite://path` or a plain file path: SQLite
    ///   ([`SqliteStore::connect`](crate::SqliteStore::connect): the file is
    ///   created if missing, WAL mode, busy timeout);
    /// - `postgres://...` or `postgresql://...`: PostgreSQL
    ///   ([`PostgresStore::connect`](crate::PostgresStore::connect), tables in
    ///   the `public` schema).
    ///
    /// Fails with [`Error::InvalidConfig`] for another scheme or a backend whose feature is
    /// not compiled in, and with [`Error::Store`] if the database cannot be reached or
    /// migrated. The URL (which may hold a password) is never put into an error.
    pub async fn connect(url: &str) -> Result<Self, Error> {
        match backend_of(url)? {
            #[cfg(feature = "sqlite")]
            Backend::Sqlite => {
                let store = if url.starts_with("sqlite:") {
                    super::sqlite::SqliteStore::connect(url).await?
                } else {
                    super::sqlite::SqliteStore::open(std::path::Path::new(url)).await?
                };
                store.migrate().await?;
                Ok(SqlStore::Sqlite(store))
            }
            #[cfg(not(feature = "sqlite"))]
            Backend::Sqlite => Err(Error::InvalidConfig(
                "a SQLite database URL needs keygate's `sqlite` feature",
            )),
            #[cfg(feature = "postgres")]
            Backend::Postgres => {
                let store = super::postgres::PostgresStore::connect(url).await?;
                store.migrate().await?;
                Ok(SqlStore::Postgres(store))
            }
            #[cfg(not(feature = "postgres"))]
            Backend::Postgres => Err(Error::InvalidConfig(
                "a PostgreSQL database URL needs keygate's `postgres` feature",
            )),
        }
    }

    /// Keeps `manager`'s verification cache in step with other instances: for PostgreSQL,
    /// starts [`PostgresStore::spawn_invalidation_listener`](crate::PostgresStore::spawn_invalidation_listener)
    /// and returns its handle (keep it: dropping it stops the listener); for SQLite, which
    /// serves one instance, returns `Ok(None)`.
    #[cfg(feature = "postgres")]
    pub async fn spawn_invalidation_listener(
        &self,
        manager: crate::TokenManager,
    ) -> Result<Option<super::postgres::ListenerHandle>, StoreError> {
        match self {
            #[cfg(feature = "sqlite")]
            SqlStore::Sqlite(_) => {
                let _ = manager;
                Ok(None)
            }
            SqlStore::Postgres(s) => s.spawn_invalidation_listener(manager).await.map(Some),
        }
    }

    fn inner(&self) -> &dyn TokenStore {
        match self {
            #[cfg(feature = "sqlite")]
            SqlStore::Sqlite(s) => s,
            #[cfg(feature = "postgres")]
            SqlStore::Postgres(s) => s,
        }
    }
}

/// Connects to the database `url` names, applies keygate's migrations, and returns the
/// store ready for [`TokenManager::builder`](crate::TokenManager::builder).
///
/// See [`SqlStore::connect`] for the accepted URLs and errors; use it instead when you need
/// the backend, e.g. to start the PostgreSQL invalidation listener.
///
/// ```no_run
/// # async fn run() -> Result<(), keygate::Error> {
/// let url = std::env::var("KEYGATE_DATABASE_URL").unwrap_or_else(|_| "keygate.db".into());
/// let store = keygate::store::connect(&url).await?;
/// let manager = keygate::TokenManager::builder(store)
///     .server_key(keygate::ServerKey::generate())
///     .build()?;
/// # let _ = manager;
/// # Ok(())
/// # }
/// ```
pub async fn connect(url: &str) -> Result<Arc<dyn TokenStore>, Error> {
    Ok(Arc::new(SqlStore::connect(url).await?))
}

#[async_trait]
impl TokenStore for SqlStore {
    async fn insert(&self, record: &TokenRecord) -> Result<(), StoreError> {
        self.inner().insert(record).await
    }
    async fn get(&self, id: &TokenId) -> Result<Option<Arc<TokenRecord>>, StoreError> {
        self.inner().get(id).await
    }
    async fn find_by_digest(
        &self,
        digest: &Digest,
    ) -> Result<Option<Arc<TokenRecord>>, StoreError> {
        self.inner().find_by_digest(digest).await
    }
    fn find_by_digest_ready(
        &self,
        digest: &Digest,
    ) -> Option<Result<Option<Arc<TokenRecord>>, StoreError>> {
        self.inner().find_by_digest_ready(digest)
    }
    async fn update(&self, record: &TokenRecord) -> Result<u64, StoreError> {
        self.inner().update(record).await
    }
    async fn delete(&self, id: &TokenId) -> Result<bool, StoreError> {
        self.inner().delete(id).await
    }
    async fn list(&self, filter: &TokenFilter, page: &PageRequest) -> Result<Page, StoreError> {
        self.inner().list(filter, page).await
    }
    async fn touch(&self, id: &TokenId, at: DateTime<Utc>) -> Result<(), StoreError> {
        self.inner().touch(id, at).await
    }
    async fn claim_key_fingerprint(
        &self,
        key_version: u32,
        fingerprint: &Digest,
    ) -> Result<Option<Digest>, StoreError> {
        self.inner()
            .claim_key_fingerprint(key_version, fingerprint)
            .await
    }

    async fn prune(&self, cutoff: DateTime<Utc>, limit: u64) -> Result<u64, StoreError> {
        self.inner().prune(cutoff, limit).await
    }
    async fn count_prunable(&self, cutoff: DateTime<Utc>) -> Result<u64, StoreError> {
        self.inner().count_prunable(cutoff).await
    }
}

/// Implements [`TokenStore`] for a SQL store by running its inherent `db_*` operations under
/// its `breaker` ([`Breaker`](super::outage::Breaker)): the lookups a verification makes
/// (`get`, `find_by_digest`) and `touch` are bounded reads; writes, listings, `prune` and
/// `count_prunable` run to their end. Both stores state their operations in their own SQL;
/// which outage rule guards which operation is stated here, once.
macro_rules! breaker_guarded_store {
    ($store:ty) => {
        #[::async_trait::async_trait]
        impl $crate::store::TokenStore for $store {
            async fn insert(
                &self,
                record: &$crate::record::TokenRecord,
            ) -> Result<(), $crate::error::StoreError> {
                self.breaker.write(self.db_insert(record)).await
            }

            async fn get(
                &self,
                id: &$crate::token::TokenId,
            ) -> Result<
                Option<::std::sync::Arc<$crate::record::TokenRecord>>,
                $crate::error::StoreError,
            > {
                self.breaker.read(self.db_get(id)).await
            }

            async fn find_by_digest(
                &self,
                digest: &$crate::digest::Digest,
            ) -> Result<
                Option<::std::sync::Arc<$crate::record::TokenRecord>>,
                $crate::error::StoreError,
            > {
                self.breaker.read(self.db_find_by_digest(digest)).await
            }

            async fn update(
                &self,
                record: &$crate::record::TokenRecord,
            ) -> Result<u64, $crate::error::StoreError> {
                self.breaker.write(self.db_update(record)).await
            }

            async fn delete(
                &self,
                id: &$crate::token::TokenId,
            ) -> Result<bool, $crate::error::StoreError> {
                self.breaker.write(self.db_delete(id)).await
            }

            async fn list(
                &self,
                filter: &$crate::store::TokenFilter,
                page: &$crate::store::PageRequest,
            ) -> Result<$crate::store::Page, $crate::error::StoreError> {
                self.breaker.write(self.db_list(filter, page)).await
            }

            async fn touch(
                &self,
                id: &$crate::token::TokenId,
                at: ::chrono::DateTime<::chrono::Utc>,
            ) -> Result<(), $crate::error::StoreError> {
                self.breaker.read(self.db_touch(id, at)).await
            }

            async fn claim_key_fingerprint(
                &self,
                key_version: u32,
                fingerprint: &$crate::digest::Digest,
            ) -> Result<Option<$crate::digest::Digest>, $crate::error::StoreError> {
                self.breaker
                    .write(self.db_claim_key_fingerprint(key_version, fingerprint))
                    .await
            }

            async fn prune(
                &self,
                cutoff: ::chrono::DateTime<::chrono::Utc>,
                limit: u64,
            ) -> Result<u64, $crate::error::StoreError> {
                self.breaker.write(self.db_prune(cutoff, limit)).await
            }

            async fn count_prunable(
                &self,
                cutoff: ::chrono::DateTime<::chrono::Utc>,
            ) -> Result<u64, $crate::error::StoreError> {
                self.breaker.write(self.db_count_prunable(cutoff)).await
            }
        }
    };
}
pub(super) use breaker_guarded_store;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_are_restricted() {
        for ok in ["keygate_", "a", "_x1", "tenant_42_"] {
            assert_eq!(check_ident(ok, false), Ok(()), "{ok}");
        }
        assert_eq!(check_ident("", true), Ok(()));
        for bad in [
            "",
            "1abc",
            "Keygate",
            "a-b",
            "a b",
            "x\"; drop table t; --",
            "é",
            &"a".repeat(41),
        ] {
            assert!(check_ident(bad, false).is_err(), "{bad:?} must be refused");
        }
    }

    #[test]
    fn like_metacharacters_are_escaped() {
        assert_eq!(contains_pattern("Deploy"), "%deploy%");
        assert_eq!(contains_pattern("_1"), "%\\_1%");
        assert_eq!(contains_pattern("50%"), "%50\\%%");
        assert_eq!(contains_pattern("a\\b"), "%a\\\\b%");
        assert_eq!(contains_pattern("Ä"), "%Ä%");
    }

    #[test]
    fn backends_by_url() {
        assert_eq!(backend_of("sqlite:keygate.db").ok(), Some(Backend::Sqlite));
        assert_eq!(backend_of("sqlite://x.db").ok(), Some(Backend::Sqlite));
        assert_eq!(backend_of("keygate.db").ok(), Some(Backend::Sqlite));
        assert_eq!(backend_of("/var/lib/k.db").ok(), Some(Backend::Sqlite));
        assert_eq!(backend_of("C:\\data\\k.db").ok(), Some(Backend::Sqlite));
        assert_eq!(
            backend_of("postgres://u@h/db").ok(),
            Some(Backend::Postgres)
        );
        assert_eq!(
            backend_of("postgresql://h/db").ok(),
            Some(Backend::Postgres)
        );
        assert!(matches!(
            backend_of("mysql://u@h/db"),
            Err(Error::InvalidConfig(_))
        ));
        assert!(matches!(backend_of(""), Err(Error::InvalidConfig(_))));
    }
}
