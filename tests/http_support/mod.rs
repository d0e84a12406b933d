//! Helpers shared by the HTTP integration tests: a real server on 127.0.0.1:0, a real
//! client, a store that can be made to fail.

#![allow(dead_code, unreachable_pub)]
#![expect(
    clippy::unwrap_used,
    reason = "test helpers: a failure is a test failure"
)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use async_trait::async_trait;
use axum::Router;
use chrono::{DateTime, Utc};
use keygate::store::{Page, PageRequest, TokenFilter};
use keygate::{MemoryStore, StoreError, TokenId, TokenRecord, TokenStore};

/// A server bound to a free loopback port; it stops with the test's runtime.
pub struct Server {
    pub addr: SocketAddr,
}

impl Server {
    pub async fn start(app: Router) -> Server {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Server { addr }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }
}

/// A client that never goes through a proxy.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().build().unwrap()
}

/// A memory store whose every call fails while `failing` is set.
#[derive(Default, Clone)]
pub struct FlakyStore {
    pub inner: Arc<MemoryStore>,
    pub failing: Arc<AtomicBool>,
}

impl FlakyStore {
    pub fn fail(&self, on: bool) {
        self.failing.store(on, Ordering::SeqCst);
    }

    fn check(&self) -> Result<(), StoreError> {
        if self.failing.load(Ordering::SeqCst) {
            Err(StoreError::backend(std::io::Error::new(
                std::io::ErrorKind::ConnectionRefused,
                "database is down",
            )))
        } else {
            Ok(())
        }
    }
}

#[async_trait]
impl TokenStore for FlakyStore {
    async fn insert(&self, record: &TokenRecord) -> Result<(), StoreError> {
        self.check()?;
        self.inner.insert(record).await
    }
    async fn get(&self, id: &TokenId) -> Result<Option<Arc<TokenRecord>>, StoreError> {
        self.check()?;
        self.inner.get(id).await
    }
    async fn update(&self, record: &TokenRecord) -> Result<u64, StoreError> {
        self.check()?;
        self.inner.update(record).await
    }
    async fn delete(&self, id: &TokenId) -> Result<bool, StoreError> {
        self.check()?;
        self.inner.delete(id).await
    }
    async fn list(&self, filter: &TokenFilter, page: &PageRequest) -> Result<Page, StoreError> {
        self.check()?;
        self.inner.list(filter, page).await
    }
    async fn touch(&self, id: &TokenId, at: DateTime<Utc>) -> Result<(), StoreError> {
        self.check()?;
        self.inner.touch(id, at).await
    }
}

/// Status, every header but `date`, and the body of a response.
pub async fn snapshot(resp: reqwest::Response) -> (u16, Vec<(String, Vec<u8>)>, Vec<u8>) {
    let status = resp.status().as_u16();
    let mut headers: Vec<(String, Vec<u8>)> = resp
        .headers()
        .iter()
        .filter(|(k, _)| k.as_str() != "date")
        .map(|(k, v)| (k.as_str().to_owned(), v.as_bytes().to_vec()))
        .collect();
    headers.sort();
    let body = resp.bytes().await.unwrap().to_vec();
    (status, headers, body)
}
