//! Helpers shared by the PostgreSQL tests: a fresh schema per test on the server named by
//! `KEYGATE_TEST_POSTGRES_URL`, and a TCP proxy the tests can cut to simulate an outage.
#![allow(
    dead_code,
    unreachable_pub,
    clippy::expect_used,
    reason = "test helpers, not all used by every test binary; they panic on setup failure"
)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use keygate::PostgresStore;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// The test database URL, or `None` (with a message) when it is not configured. Under
/// `KEYGATE_REQUIRE_DB=1` a missing database fails the test instead.
pub fn postgres_url() -> Option<String> {
    match std::env::var("KEYGATE_TEST_POSTGRES_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            if std::env::var("KEYGATE_REQUIRE_DB").is_ok_and(|v| v == "1") {
                panic!("KEYGATE_REQUIRE_DB=1 but KEYGATE_TEST_POSTGRES_URL is not set");
            }
            eprintln!(
                "SKIPPED: set KEYGATE_TEST_POSTGRES_URL (e.g. postgres://postgres@127.0.0.1:5432/test) \
                 to run the PostgreSQL tests"
            );
            None
        }
    }
}

/// A schema with a random name, migrated, dropped when this value is dropped (also when
/// the test panics).
pub struct TestSchema {
    pub url: String,
    pub name: String,
}

impl TestSchema {
    /// `None` if no database is configured (see [`postgres_url`]).
    pub async fn new() -> Option<(TestSchema, PostgresStore)> {
        let url = postgres_url()?;
        let mut b = [0u8; 6];
        rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut b);
        let name = format!("kg_test_{}", hex::encode(b));
        let schema = TestSchema { url, name };
        let store = schema.store().await;
        store.migrate().await.expect("migrate");
        Some((schema, store))
    }

    /// A store in this schema over a new pool of its own.
    pub async fn store(&self) -> PostgresStore {
        self.store_at(&self.url).await
    }

    /// A store in this schema over a new pool connected to `url`.
    pub async fn store_at(&self, url: &str) -> PostgresStore {
        PostgresStore::connect(url)
            .await
            .unwrap_or_else(|e| {
                if std::env::var("KEYGATE_REQUIRE_DB").is_ok_and(|v| v == "1") {
                    panic!("cannot reach the test database: {e:?}");
                }
                panic!("cannot reach the test database named by KEYGATE_TEST_POSTGRES_URL: {e:?}")
            })
            .with_schema(&self.name)
            .expect("schema name")
    }
}

impl Drop for TestSchema {
    fn drop(&mut self) {
        let url = self.url.clone();
        let sql = format!("DROP SCHEMA IF EXISTS \"{}\" CASCADE", self.name);
        // Drop runs inside the test's runtime: use a thread with a runtime of its own.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async move {
                if let Ok(pool) = sqlx::postgres::PgPoolOptions::new()
                    .max_connections(1)
                    .connect(&url)
                    .await
                {
                    let _ = sqlx::query(&sql).execute(&pool).await;
                    pool.close().await;
                }
            });
        })
        .join();
    }
}

/// A TCP proxy on 127.0.0.1 to the PostgreSQL server, which a test can cut (every open
/// connection is closed and new ones are closed at once) and restore, without touching the
/// server other tests use.
pub struct Proxy {
    pub addr: SocketAddr,
    up: Arc<AtomicBool>,
    kill: watch::Sender<u64>,
    task: tokio::task::JoinHandle<()>,
}

impl Proxy {
    pub async fn start(target_url: &str) -> Proxy {
        let target = target_addr(target_url);
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let addr = listener.local_addr().expect("proxy addr");
        let up = Arc::new(AtomicBool::new(true));
        let (kill, _) = watch::channel(0u64);
        let (up2, kill2) = (Arc::clone(&up), kill.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut client, _)) = listener.accept().await else {
                    continue;
                };
                if !up2.load(Ordering::SeqCst) {
                    drop(client);
                    continue;
                }
                let mut killed = kill2.subscribe();
                tokio::spawn(async move {
                    let Ok(mut server) = TcpStream::connect(target).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                        _ = killed.changed() => {}
                    }
                });
            }
        });
        Proxy {
            addr,
            up,
            kill,
            task,
        }
    }

    /// The database URL with the host and port replaced by the proxy's.
    pub fn url(&self, url: &str) -> String {
        let (scheme, rest) = url.split_once("://").expect("url scheme");
        let (auth_host, path) = rest.split_once('/').unwrap_or((rest, ""));
        let auth = auth_host.rsplit_once('@').map(|(a, _)| format!("{a}@"));
        format!(
            "{scheme}://{}{}/{path}",
            auth.unwrap_or_default(),
            self.addr
        )
    }

    /// The database "goes away": open connections are closed, new ones refused.
    pub fn cut(&self) {
        self.up.store(false, Ordering::SeqCst);
        self.kill.send_modify(|g| *g += 1);
    }

    /// The database is back.
    pub fn restore(&self) {
        self.up.store(true, Ordering::SeqCst);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.cut();
        self.task.abort();
    }
}

fn target_addr(url: &str) -> SocketAddr {
    let rest = url.split_once("://").expect("url scheme").1;
    let host_port = rest.split('/').next().unwrap_or(rest);
    let host_port = host_port.rsplit_once('@').map_or(host_port, |(_, h)| h);
    let host_port = if host_port.contains(':') {
        host_port.to_owned()
    } else {
        format!("{host_port}:5432")
    };
    let host_port = host_port.replace("localhost", "127.0.0.1");
    host_port
        .parse()
        .expect("the test URL must name host:port as an IP address")
}

/// Percentile (0..=100) of sorted durations.
pub fn percentile(sorted: &[std::time::Duration], p: usize) -> std::time::Duration {
    if sorted.is_empty() {
        return std::time::Duration::ZERO;
    }
    let i = ((sorted.len() - 1) * p).div_ceil(100);
    sorted[i.min(sorted.len() - 1)]
}
