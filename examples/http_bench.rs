//! The server of `benches/http_load.sh`: the same hello handler bare (`GET /bare`) and behind
//! keygate's layer (`GET /protected`, memory store), on `KEYGATE_BENCH_ADDR` (default
//! `127.0.0.1:0`). Prints `ADDR=<addr>` and `TOKEN=<a valid token>` on standard output.

use std::error::Error;
use std::io::Write;

use axum::Router;
use axum::routing::get;
use keygate::axum::Keygate;
use keygate::{IssueRequest, MemoryStore, ScopeSet, ServerKey, TokenManager};

async fn hello() -> &'static str {
    "Hello, World!"
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    let manager = TokenManager::builder(MemoryStore::new())
        .server_key(ServerKey::generate())
        .build()?;
    // A realistic store: the valid token among 10,000 others.
    for i in 0..10_000 {
        manager
            .issue(IssueRequest::new(format!("filler {i}"), "load"))
            .await?;
    }
    let issued = manager
        .issue(IssueRequest::new("load test", "load").scopes(ScopeSet::parse(["hello:read"])?))
        .await?;
    let keygate = Keygate::new(manager);
    let app = Router::new()
        .route("/protected", get(hello))
        .layer(keygate.layer())
        .route("/bare", get(hello));

    let addr = std::env::var("KEYGATE_BENCH_ADDR").unwrap_or_else(|_| "127.0.0.1:0".into());
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "ADDR={}", listener.local_addr()?)?;
    writeln!(out, "TOKEN={}", issued.expose_secret())?;
    out.flush()?;
    drop(out);
    axum::serve(listener, app).await?;
    Ok(())
}
