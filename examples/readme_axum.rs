//! README, HTTP with axum (features `axum`): a protected route, the caller's identity, and
//! the token admin API.

use axum::{Router, routing::get};
use keygate::axum::Keygate;
use keygate::{MemoryStore, ServerKey, TokenManager, VerifiedToken};

async fn list_projects() -> &'static str {
    "[]"
}

async fn whoami(token: VerifiedToken) -> String {
    token.owner().to_owned()
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let manager = TokenManager::builder(MemoryStore::new())
        .server_key(ServerKey::generate())
        .build()?;
    let keygate = Keygate::new(manager);
    let app = Router::new()
        .route(
            "/api/projects",
            get(list_projects).route_layer(keygate.require_scopes(["projects:read"])),
        )
        .route("/api/whoami", get(whoami))
        .layer(keygate.layer())
        // The token admin API, outside the layer: it authenticates each request itself and
        // serves its OpenAPI document at /api/tokens/openapi.json without credentials.
        .merge(keygate.admin_router_at("/api/tokens")?)
        .with_state(keygate); // extractors find the manager in the state (`FromRef<S>` works too)
    let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
    axum::serve(listener, app).await?;
    Ok(())
}
