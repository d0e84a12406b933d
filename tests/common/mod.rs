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
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

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
    stalled: Arc<AtomicBool>,
    delay_ms: Arc<AtomicU64>,
    kill: watch::Sender<u64>,
    task: tokio::task::JoinHandle<()>,
}

impl Proxy {
    pub async fn start(target_url: &str) -> Proxy {
        let target = target_addr(target_url);
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let addr = listener.local_addr().expect("proxy addr");
        let up = Arc::new(AtomicBool::new(true));
        let stalled = Arc::new(AtomicBool::new(false));
        let delay_ms = Arc::new(AtomicU64::new(0));
        let (kill, _) = watch::channel(0u64);
        let (up2, kill2) = (Arc::clone(&up), kill.clone());
        let (stalled2, delay2) = (Arc::clone(&stalled), Arc::clone(&delay_ms));
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
                let stalled = Arc::clone(&stalled2);
                let delay = std::time::Duration::from_millis(delay2.load(Ordering::SeqCst));
                tokio::spawn(async move {
                    tokio::time::sleep(delay).await;
                    // A stalled proxy holds the connection open and forwards nothing.
                    while stalled.load(Ordering::SeqCst) {
                        tokio::select! {
                            _ = tokio::time::sleep(std::time::Duration::from_millis(5)) => {}
                            _ = killed.changed() => return,
                        }
                    }
                    let Ok(mut server) = TcpStream::connect(target).await else {
                        return;
                    };
                    // Biased: once cut, no byte more is forwarded, even when the copy is
                    // ready too (an unbiased select picks a ready branch at random).
                    tokio::select! {
                        biased;
                        _ = killed.changed() => {}
                        _ = copy_until_stalled(&mut client, &mut server, &stalled) => {}
                    }
                });
            }
        });
        Proxy {
            addr,
            up,
            stalled,
            delay_ms,
            kill,
            task,
        }
    }

    /// The database stops answering: connections stay open, nothing is forwarded either
    /// way (a hung server or a black-holed network), until [`Proxy::cut`] or
    /// [`Proxy::restore`].
    pub fn stall(&self) {
        self.stalled.store(true, Ordering::SeqCst);
    }

    /// Closes every open connection; new ones are still accepted.
    pub fn drop_connections(&self) {
        self.kill.send_modify(|g| *g += 1);
    }

    /// New connections reach the server only after `delay`.
    pub fn delay_new_connections(&self, delay: std::time::Duration) {
        self.delay_ms
            .store(delay.as_millis() as u64, Ordering::SeqCst);
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

    /// The database is back (also after a stall: connections held open by the stall then
    /// resume, so a client that gave up on them must not reuse them).
    pub fn restore(&self) {
        self.stalled.store(false, Ordering::SeqCst);
        self.up.store(true, Ordering::SeqCst);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.cut();
        self.task.abort();
    }
}

/// Copies both ways until either side closes; while `stalled`, forwards nothing.
async fn copy_until_stalled(a: &mut TcpStream, b: &mut TcpStream, stalled: &AtomicBool) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (mut ar, mut aw) = a.split();
    let (mut br, mut bw) = b.split();
    let one = async {
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            while stalled.load(Ordering::SeqCst) {
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            }
            match ar.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    while stalled.load(Ordering::SeqCst) {
                        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
                    }
                    if bw.write_all(&buf[..n]).await.is_err() {
                        return;
                    }
                }
            }
        }
    };
    let two = async {
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            while stalled.load(Ordering::SeqCst) {
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            }
            match br.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    while stalled.load(Ordering::SeqCst) {
                        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
                    }
                    if aw.write_all(&buf[..n]).await.is_err() {
                        return;
                    }
                }
            }
        }
    };
    tokio::select! {
        _ = one => {}
        _ = two => {}
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
