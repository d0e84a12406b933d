//! Helpers shared by the HTTP integration tests: a real server on 127.0.0.1:0, a real
//! client, a store that can be made to fail.

#![allow(dead_code, unreachable_pub)]
#![expect(
    clippy::unwrap_used,
    reason = "test helpers: a failure is a test failure"
)]

pub mod openapi;

use std::net::SocketAddr;

use axum::Router;
use keygate::MemoryStore;
use keygate::testing::{FaultHandle, FaultyStore};

/// A server bound to a free loopback port, with each connection's address in the request
/// extensions (`ConnectInfo`, for IP allowlists); it stops with the test's runtime.
pub struct Server {
    pub addr: SocketAddr,
}

impl Server {
    pub async fn start(app: Router) -> Server {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            axum::serve(
                listener,
                app.into_make_service_with_connect_info::<SocketAddr>(),
            )
            .await
            .unwrap();
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

/// A memory store that fails every call while its fault is set (see
/// `keygate::testing::FaultyStore`): the store for the manager, and the switch.
pub fn faulty_store() -> (FaultyStore<MemoryStore>, FaultHandle) {
    FaultyStore::new(MemoryStore::new())
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
