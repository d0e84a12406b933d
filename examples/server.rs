//! A small "projects" API protected by keygate, with the admin API mounted at `/api/tokens`.
//!
//! ```sh
//! cargo run --example server
//! ```
//!
//! - `KEYGATE_ADDR`: where to listen (default `127.0.0.1:3000`).
//! - `KEYGATE_PEPPER`: the server key, hex or base64 of at least 32 bytes. Without it a
//!   random key is generated for this run only (a demo: tokens die with the process).
//!
//! On first start it creates an admin token (scope `*`) and prints it once with a curl line.
//!
//! Routes: `GET /api/projects` (scope `projects:read`, as a route layer), `POST /api/projects`
//! (`projects:write`, as a typed extractor, plus a project check), `GET /api/projects/{id}`
//! (`projects:read` and the project), `GET /api/whoami` (any valid token), and the admin API
//! under `/api/tokens` (see `keygate::axum::admin`).

use std::error::Error;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::extract::{FromRef, Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use keygate::axum::{Keygate, ScopeRequirement, Scoped};
use keygate::store::TokenFilter;
use keygate::{
    ExpiryPreset, IssueRequest, MemoryStore, PageRequest, ProjectId, Scope, ScopeSet, ServerKey,
    TokenManager, TokenStatus, TokenStore, VerifiedToken,
};
use serde::{Deserialize, Serialize};

/// The owner of the token created on first start.
const ADMIN_OWNER: &str = "admin";

/// The token store. The one place to change to use another store.
async fn open_store() -> Result<Arc<dyn TokenStore>, Box<dyn Error>> {
    Ok(Arc::new(MemoryStore::new()))
}

#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Project {
    id: ProjectId,
    name: String,
}

#[derive(Clone)]
struct AppState {
    keygate: Keygate,
    projects: Arc<Mutex<Vec<Project>>>,
}

impl FromRef<AppState> for Keygate {
    fn from_ref(state: &AppState) -> Keygate {
        state.keygate.clone()
    }
}

struct ProjectsRead;
impl ScopeRequirement for ProjectsRead {
    const SCOPES: &'static [&'static str] = &["projects:read"];
}

struct ProjectsWrite;
impl ScopeRequirement for ProjectsWrite {
    const SCOPES: &'static [&'static str] = &["projects:write"];
}

fn projects(state: &AppState) -> std::sync::MutexGuard<'_, Vec<Project>> {
    state.projects.lock().unwrap_or_else(|e| e.into_inner())
}

/// Projects the token may act on.
async fn list_projects(State(state): State<AppState>, token: VerifiedToken) -> Json<Vec<Project>> {
    let visible = projects(&state)
        .iter()
        .filter(|p| token.projects().allows(&p.id))
        .cloned()
        .collect();
    Json(visible)
}

async fn get_project(
    State(state): State<AppState>,
    token: Scoped<ProjectsRead>,
    Path(id): Path<String>,
) -> Response {
    let Ok(id) = ProjectId::new(&id) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    if let Err(rejection) = state.keygate.authorize_project(&token, &id) {
        return rejection.into_response();
    }
    match projects(&state).iter().find(|p| p.id == id) {
        Some(p) => Json(p.clone()).into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

async fn create_project(
    State(state): State<AppState>,
    token: Scoped<ProjectsWrite>,
    Json(project): Json<Project>,
) -> Response {
    if let Err(rejection) = state.keygate.authorize_project(&token, &project.id) {
        return rejection.into_response();
    }
    let mut all = projects(&state);
    if all.iter().any(|p| p.id == project.id) {
        return (StatusCode::CONFLICT, "project exists").into_response();
    }
    all.push(project.clone());
    (StatusCode::CREATED, Json(project)).into_response()
}

#[derive(Serialize)]
struct WhoAmI<'a> {
    token_id: &'a str,
    name: &'a str,
    owner: &'a str,
    scopes: &'a ScopeSet,
    projects: &'a keygate::Projects,
    expires_at: Option<chrono::DateTime<chrono::Utc>>,
}

async fn whoami(token: VerifiedToken) -> Response {
    Json(WhoAmI {
        token_id: token.id().as_str(),
        name: token.name(),
        owner: token.owner(),
        scopes: token.scopes(),
        projects: token.projects(),
        expires_at: token.expiry().at(),
    })
    .into_response()
}

/// The service: every route behind keygate's layer.
fn app(keygate: Keygate) -> Result<Router, keygate::Error> {
    let state = AppState {
        keygate: keygate.clone(),
        projects: Arc::new(Mutex::new(vec![
            Project {
                id: ProjectId::new("website")?,
                name: "Website".into(),
            },
            Project {
                id: ProjectId::new("billing")?,
                name: "Billing".into(),
            },
        ])),
    };
    Ok(Router::new()
        .route(
            "/api/projects",
            get(list_projects)
                .route_layer(keygate.require_scopes(["projects:read"]))
                .post(create_project),
        )
        .route("/api/projects/{id}", get(get_project))
        .route("/api/whoami", get(whoami))
        .nest("/api/tokens", keygate.admin_router())
        .layer(keygate.layer())
        .with_state(state))
}

fn server_key() -> Result<ServerKey, Box<dyn Error>> {
    match std::env::var("KEYGATE_PEPPER") {
        Ok(text) => ServerKey::decode(&text).map_err(|e| format!("KEYGATE_PEPPER: {e}").into()),
        Err(std::env::VarError::NotPresent) => {
            eprintln!("################################################################");
            eprintln!("# KEYGATE_PEPPER is not set: using a random server key.        #");
            eprintln!("# THIS IS FOR A DEMO ONLY. Tokens stop working on restart.     #");
            eprintln!("# Set KEYGATE_PEPPER to 32+ random bytes, hex or base64, e.g.  #");
            eprintln!("#   export KEYGATE_PEPPER=$(openssl rand -hex 32)              #");
            eprintln!("################################################################");
            Ok(ServerKey::generate())
        }
        Err(e) => Err(e.into()),
    }
}

/// Creates the admin token if there is no active one; returns its plaintext once.
async fn ensure_admin_token(manager: &TokenManager) -> Result<Option<String>, Box<dyn Error>> {
    let filter = TokenFilter::new()
        .owner(ADMIN_OWNER)
        .scope(Scope::admin())
        .status(TokenStatus::Active);
    if !manager
        .list(&filter, &PageRequest::first(1))
        .await?
        .items
        .is_empty()
    {
        return Ok(None);
    }
    let issued = manager
        .issue(
            IssueRequest::new("admin (created on first start)", ADMIN_OWNER)
                .scopes(ScopeSet::from_iter([Scope::admin()]))
                .expiry(ExpiryPreset::Days90),
        )
        .await?;
    Ok(Some(issued.expose_secret().to_owned()))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();

    let addr: SocketAddr = std::env::var("KEYGATE_ADDR")
        .unwrap_or_else(|_| "127.0.0.1:3000".into())
        .parse()?;
    let manager = TokenManager::builder(open_store().await?)
        .server_key(server_key()?)
        .build()?;
    let admin = ensure_admin_token(&manager).await?;
    let keygate = Keygate::new(manager);

    let listener = tokio::net::TcpListener::bind(addr).await?;
    let addr = listener.local_addr()?;
    println!("keygate example service listening on http://{addr}");
    if let Some(token) = admin {
        println!();
        println!("Admin token (shown once, keep it safe):");
        println!("  {token}");
        println!();
        println!("Try:");
        println!("  curl -H \"Authorization: Bearer {token}\" http://{addr}/api/whoami");
        println!("  curl -H \"Authorization: Bearer {token}\" http://{addr}/api/projects");
        println!(
            "  curl -H \"Authorization: Bearer {token}\" -H 'Content-Type: application/json' \\\n       -d '{{\"name\":\"ci\",\"scopes\":[\"projects:read\"],\"expires\":\"7d\"}}' http://{addr}/api/tokens"
        );
        println!();
    }
    axum::serve(listener, app(keygate)?)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}
