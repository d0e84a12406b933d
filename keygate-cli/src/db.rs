//! Opening the store a database URL names.
//!
//! `keygate::store::SqlStore::connect` also picks a backend by URL, but it always migrates,
//! creates a missing SQLite file and has no PostgreSQL schema option. The command line needs
//! the opposite for every command but `migrate` (a mistyped path must not become a new empty
//! database), so it opens the stores itself with the same URL rules.

use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;

use keygate::{PostgresStore, SqliteStore, store::TokenStore};
use sqlx::sqlite::SqliteConnectOptions;

use crate::fail::Failure;

/// Which backend, and where.
enum Target {
    /// A SQLite URL (`sqlite:...`) or a plain path.
    Sqlite { url: Option<String>, path: PathBuf },
    /// A PostgreSQL URL.
    Postgres(String),
}

/// Where the store is, as given on the command line or in the environment.
pub(crate) struct Location {
    target: Target,
    schema: Option<String>,
}

impl Location {
    /// Checks the URL and the schema option, without connecting.
    pub(crate) fn parse(url: Option<&str>, schema: Option<&str>) -> Result<Self, Failure> {
        let url = url.map(str::trim).unwrap_or_default();
        if url.is_empty() {
            return Err(Failure::usage(
                "no database: set KEYGATE_DATABASE_URL or pass --database-url",
            ));
        }
        let target = if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Target::Postgres(url.to_owned())
        } else if url.starts_with("sqlite:") {
            let options = SqliteConnectOptions::from_str(url)
                .map_err(|_| Failure::usage("the SQLite database URL cannot be parsed"))?;
            Target::Sqlite {
                url: Some(url.to_owned()),
                path: options.get_filename().to_owned(),
            }
        } else if has_scheme(url) {
            return Err(Failure::usage(
                "unsupported database URL scheme: use sqlite:PATH, a file path, or postgres://...",
            ));
        } else {
            Target::Sqlite {
                url: None,
                path: PathBuf::from(url),
            }
        };
        let schema = schema.map(str::trim).filter(|s| !s.is_empty());
        if let Some(schema) = schema {
            if matches!(target, Target::Sqlite { .. }) {
                return Err(Failure::usage(
                    "--schema (KEYGATE_DATABASE_SCHEMA) applies to PostgreSQL only",
                ));
            }
            // Checked again by `PostgresStore::with_schema`; checking here too makes a bad
            // name a usage error even when the database is down.
            if !plausible_schema(schema) {
                return Err(Failure::usage(
                    "invalid schema: up to 40 of a-z, 0-9 and `_`, starting with a letter or `_`, \
                     not starting with `pg_`",
                ));
            }
        }
        Ok(Location {
            target,
            schema: schema.map(str::to_owned),
        })
    }

    /// Connects and migrates (`keygate migrate`).
    pub(crate) async fn migrate(&self) -> Result<(), Failure> {
        match &self.target {
            Target::Sqlite { url, path } => {
                let store = open_sqlite(url.as_deref(), path).await?;
                store.migrate().await.map_err(Failure::store)?;
            }
            Target::Postgres(url) => {
                let store = self.open_postgres(url).await?;
                store.migrate().await.map_err(Failure::store)?;
            }
        }
        Ok(())
    }

    /// Connects to an existing, migrated store. Creates nothing: a missing SQLite file or
    /// missing tables are reported, pointing at `keygate migrate`.
    pub(crate) async fn open(&self) -> Result<Arc<dyn TokenStore>, Failure> {
        match &self.target {
            Target::Sqlite { url, path } => {
                if !is_memory(path) && !path.exists() {
                    return Err(Failure::not_migrated(format!(
                        "no database file at {}: run `keygate migrate` to create it",
                        path.display()
                    )));
                }
                let store = open_sqlite(url.as_deref(), path).await?;
                let table = format!("{}schema_migrations", store.table_prefix());
                let migrated: Option<i64> = sqlx::query_scalar(
                    "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = ?",
                )
                .bind(&table)
                .fetch_optional(store.pool())
                .await
                .map_err(|e| Failure::store(keygate::error::StoreError::backend(e)))?;
                if migrated.unwrap_or(0) == 0 {
                    return Err(not_migrated());
                }
                Ok(Arc::new(store))
            }
            Target::Postgres(url) => {
                let store = self.open_postgres(url).await?;
                let table = format!("\"{}\".keygate_schema_migrations", store.schema());
                let found: Option<String> = sqlx::query_scalar("SELECT to_regclass($1)::text")
                    .bind(&table)
                    .fetch_one(store.pool())
                    .await
                    .map_err(|e| Failure::store(keygate::error::StoreError::backend(e)))?;
                if found.is_none() {
                    return Err(not_migrated());
                }
                Ok(Arc::new(store))
            }
        }
    }

    async fn open_postgres(&self, url: &str) -> Result<PostgresStore, Failure> {
        let store = PostgresStore::connect(url).await.map_err(Failure::store)?;
        match &self.schema {
            Some(schema) => store.with_schema(schema).map_err(Failure::from_error),
            None => Ok(store),
        }
    }
}

async fn open_sqlite(url: Option<&str>, path: &std::path::Path) -> Result<SqliteStore, Failure> {
    match url {
        Some(url) => SqliteStore::connect(url).await,
        None => SqliteStore::open(path).await,
    }
    .map_err(Failure::store)
}

fn not_migrated() -> Failure {
    Failure::not_migrated(
        "the database has no keygate tables (not migrated): run `keygate migrate` first".to_owned(),
    )
}

fn is_memory(path: &std::path::Path) -> bool {
    path.as_os_str() == ":memory:"
}

/// `scheme:` per RFC 3986, two or more characters (so `C:\...` stays a path).
fn has_scheme(url: &str) -> bool {
    url.split_once(':').is_some_and(|(s, _)| {
        s.len() > 1
            && s.starts_with(|c: char| c.is_ascii_alphabetic())
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
    })
}

/// The rule of `PostgresStore::with_schema`, checked before connecting.
fn plausible_schema(s: &str) -> bool {
    s.len() <= 40
        && s.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        && !s.starts_with("pg_")
}
