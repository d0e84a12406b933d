//! A small "projects" API protected by keygate, with the admin API mounted at `/api/tokens`.
//!
//! ```sh
//! cargo run --example server --features console,sqlite,postgres,metrics
//! ```
//!
//! - `KEYGATE_ADDR`: where to listen (default `127.0.0.1:3000`).
//! - `KEYGATE_DATABASE_URL`: the token store. Default: the SQLite file `keygate-example.db`
//!   in the current directory, created on first start. A `postgres://` URL uses PostgreSQL,
//!   with a verification cache kept in step across instances by LISTEN/NOTIFY;
//!   `KEYGATE_DATABASE_SCHEMA` puts keygate's tables in a schema of their own (as for the
//!   `keygate` command line).
//! - `KEYGATE_PEPPER`: the server key, hex or base64 of at least 32 bytes. Without it the
//!   example generates one, keeps it in `keygate-example.pepper` in the current directory
//!   (so its tokens survive a restart) and says loudly that this is for a demo only.
//!
//! On first start (no active admin token in the store) it creates an admin token (scope `*`)
//! and prints it once with curl lines that use it.
//!
//! Routes: `GET /api/projects` (scope `projects:read`, as a route layer), `POST /api/projects`
//! (`projects:write`, as a typed extractor, plus a project check), `GET /api/projects/{id}`
//! (`projects:read` and the project), `GET /api/whoami` (any valid token), and the admin API
//! under `/api/tokens` (see `keygate::axum::admin`), with its OpenAPI document at
//! `GET /api/tokens/openapi.json` (no credentials needed).
//!
//! Every hour (and at start) it tells the owners of tokens entering the 60, 30, 7 or 0-day
//! window before expiry, once per window, by logging `token expires soon` (target
//! `keygate_example::expiry`), where a real service would mail them.
//!
//! On SIGTERM or SIGINT it stops accepting connections and lets the requests in flight
//! finish (at most 10 s) before it exits.
//!
//! The web console is nested at `/console` (`/` redirects there); sign in with the admin
//! token.
//!
//! `GET /metrics` answers keygate's metrics (`keygate::metrics`) in Prometheus' text format,
//! without credentials, as scrapers expect: they are counts and latencies, with no token,
//! id or owner in them. Keep the address private (the default is loopback) or put the route
//! behind your network's scrape policy.
//!
//! The admin router is merged outside keygate's layer: each of its routes authenticates
//! its request itself, and the document, which holds no secret, answers without one.

use std::error::Error;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock};

use axum::extract::{FromRef, Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use keygate::cache::CacheConfig;
use keygate::expiry::{ExpiryNotice, ExpiryNotifier, ExpiryWindows};
use keygate::{
    ExpiryPreset, IssueRequest, Scope, ScopeSet, ServerKey, TokenManager, TokenStatus,
    VerifiedToken, scope::ProjectId, store::PageRequest,
};
use keygate::{PostgresStore, store::ListenerHandle};
use keygate::{axum::Keygate, axum::ScopeRequirement, axum::Scoped};
use keygate::{store::SqlStore, store::TokenFilter};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use serde::{Deserialize, Serialize};

/// The owner of the token created on first start.
const ADMIN_OWNER: &str = "admin";

/// The default store: a SQLite file in the current directory.
const DEFAULT_DATABASE_URL: &str = "sqlite:keygate-example.db";
/// Where the demo server key is kept when `KEYGATE_PEPPER` is not set.
const DEMO_PEPPER_FILE: &str = "keygate-example.pepper";

/// The token store named by `url` (SQLite or PostgreSQL, in `schema` if given), migrated.
async fn open_store(url: &str, schema: Option<&str>) -> Result<SqlStore, Box<dyn Error>> {
    let Some(schema) = schema else {
        return Ok(SqlStore::connect(url).await?);
    };
    if !url.starts_with("postgres://") && !url.starts_with("postgresql://") {
        return Err("KEYGATE_DATABASE_SCHEMA applies to PostgreSQL only".into());
    }
    let store = PostgresStore::connect(url).await?.with_schema(schema)?;
    store.migrate().await?;
    Ok(SqlStore::Postgres(store))
}

/// The example service, started: its state, the admin token if one was created now, the
/// PostgreSQL invalidation listener (keep it alive), and the expiry notices' task (stopped
/// when the service is dropped).
pub(crate) struct Service {
    pub(crate) keygate: Keygate,
    pub(crate) admin_token: Option<String>,
    _listener: Option<ListenerHandle>,
    _expiry_notices: AbortOnDrop,
}

/// How often the service looks for tokens entering an expiry window (and once at start).
const EXPIRY_CHECK_INTERVAL: std::time::Duration = std::time::Duration::from_secs(3600);

/// Tells owners that their tokens expire soon by logging it; a real service would mail them
/// (queueing the mail, so that a mail server's failure loses no notice).
struct LogExpiryNotices;

#[async_trait::async_trait]
impl ExpiryNotifier for LogExpiryNotices {
    async fn token_expiring(
        &self,
        record: &keygate::TokenRecord,
        notice: &ExpiryNotice,
    ) -> Result<(), keygate::error::BoxError> {
        tracing::info!(
            target: "keygate_example::expiry",
            token_id = record.id.as_str(),
            owner = record.owner.as_str(),
            name = record.name.as_str(),
            expires_at = %notice.expires_at,
            window_days = notice.window.as_secs() / 86_400,
            "token expires soon"
        );
        Ok(())
    }
}

/// Runs the expiry notices now and then every [`EXPIRY_CHECK_INTERVAL`], with the default
/// windows (60, 30 and 7 days ahead, and at expiry).
fn spawn_expiry_notices(manager: TokenManager) -> AbortOnDrop {
    AbortOnDrop(tokio::spawn(async move {
        let windows = ExpiryWindows::default();
        let mut every = tokio::time::interval(EXPIRY_CHECK_INTERVAL);
        loop {
            every.tick().await;
            match manager.notify_expiring(&windows, &LogExpiryNotices).await {
                Ok(report) if report.sent + report.failed > 0 => tracing::info!(
                    target: "keygate_example::expiry",
                    sent = report.sent,
                    failed = report.failed,
                    "expiry notices"
                ),
                Ok(_) => {}
                Err(e) => tracing::warn!(
                    target: "keygate_example::expiry",
                    error = %e,
                    "expiry notices failed; trying again at the next check"
                ),
            }
        }
    }))
}

/// A task that stops when this is dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Opens the store, builds the manager, and creates the first admin token if needed.
pub(crate) async fn start(
    database_url: &str,
    schema: Option<&str>,
    key: ServerKey,
) -> Result<Service, Box<dyn Error>> {
    let store = open_store(database_url, schema).await?;
    let mut builder = TokenManager::builder(store.clone()).server_key(key);
    if matches!(store, SqlStore::Postgres(_)) {
        // Several instances may share this database: cache verifications, and let
        // LISTEN/NOTIFY drop entries another instance changed.
        builder = builder.cache(CacheConfig::new());
    }
    let manager = builder.build()?;
    // Another KEYGATE_PEPPER than the tokens were issued under would refuse them all.
    manager
        .check_server_keys()
        .await
        .map_err(|e| format!("KEYGATE_PEPPER: {e}"))?;
    let listener = store.spawn_invalidation_listener(manager.clone()).await?;
    let admin_token = ensure_admin_token(&manager).await?;
    Ok(Service {
        _expiry_notices: spawn_expiry_notices(manager.clone()),
        keygate: Keygate::new(manager),
        admin_token,
        _listener: listener,
    })
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

/// Where the admin API is mounted.
const ADMIN_PREFIX: &str = "/api/tokens";

/// The service: the application's routes behind keygate's layer, and the admin API beside
/// them (it authenticates each request itself; its OpenAPI document needs no credentials).
/// The process's Prometheus recorder, installed on first use; `None` if another recorder
/// was installed first.
fn prometheus() -> Option<&'static PrometheusHandle> {
    static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();
    HANDLE
        .get_or_init(|| PrometheusBuilder::new().install_recorder().ok())
        .as_ref()
}

/// `GET /metrics`: the metrics in Prometheus' text exposition format.
async fn metrics() -> Response {
    match prometheus() {
        Some(handle) => (
            [(
                axum::http::header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            )],
            handle.render(),
        )
            .into_response(),
        None => (StatusCode::SERVICE_UNAVAILABLE, "no metrics recorder").into_response(),
    }
}

pub(crate) fn app(keygate: Keygate) -> Result<Router, keygate::Error> {
    // Record from the first request on, not from the first scrape.
    let _ = prometheus();
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
        .layer(keygate.layer())
        .route("/metrics", get(metrics))
        .merge(keygate.admin_router_at(ADMIN_PREFIX)?)
        .route(
            "/",
            get(|| async { axum::response::Redirect::to("/console") }),
        )
        .nest("/console", keygate.console(console_config())?)
        .with_state(state))
}

/// The web console's catalogue: the scopes and projects of this service.
fn console_config() -> keygate::console::ConsoleConfig {
    use keygate::console::{ConsoleConfig, ScopeEntry, ScopeTemplate};
    ConsoleConfig::new()
        .title("Projects API tokens")
        .scope(ScopeEntry::new(
            "projects:read",
            "Read projects",
            "Projects",
        ))
        .scope(ScopeEntry::new(
            "projects:write",
            "Create projects",
            "Projects",
        ))
        .scope(ScopeEntry::new(
            "tokens:self",
            "Manage own tokens",
            "Tokens",
        ))
        .scope(ScopeEntry::new(
            "tokens:console",
            "Sign in to the console",
            "Tokens",
        ))
        .template(ScopeTemplate::new("read-only client", ["projects:read"]))
        .project("website", "Website")
        .project("billing", "Billing")
}

fn server_key() -> Result<ServerKey, Box<dyn Error>> {
    match std::env::var("KEYGATE_PEPPER") {
        Ok(text) => ServerKey::decode(&text).map_err(|e| format!("KEYGATE_PEPPER: {e}").into()),
        Err(std::env::VarError::NotPresent) => {
            eprintln!("################################################################");
            eprintln!("# KEYGATE_PEPPER is not set: using a demo server key kept in   #");
            eprintln!("# {DEMO_PEPPER_FILE:<61}#");
            eprintln!("# THIS IS FOR A DEMO ONLY. Anyone who reads that file and the  #");
            eprintln!("# database can check guesses offline. Set KEYGATE_PEPPER to    #");
            eprintln!("# 32+ random bytes, hex or base64, from your secret store:     #");
            eprintln!("#   export KEYGATE_PEPPER=$(openssl rand -hex 32)              #");
            eprintln!("################################################################");
            demo_server_key()
        }
        Err(e) => Err(e.into()),
    }
}

/// The demo key from its file, or a new one written there (owner-only permissions).
fn demo_server_key() -> Result<ServerKey, Box<dyn Error>> {
    match std::fs::read_to_string(DEMO_PEPPER_FILE) {
        Ok(text) => ServerKey::decode(&text).map_err(|e| format!("{DEMO_PEPPER_FILE}: {e}").into()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let key = ServerKey::generate();
            let mut options = std::fs::OpenOptions::new();
            options.write(true).create_new(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
            let mut file = options.open(DEMO_PEPPER_FILE)?;
            std::io::Write::write_all(&mut file, key.expose_hex().as_bytes())?;
            Ok(key)
        }
        Err(e) => Err(format!("{DEMO_PEPPER_FILE}: {e}").into()),
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
    let database_url =
        std::env::var("KEYGATE_DATABASE_URL").unwrap_or_else(|_| DEFAULT_DATABASE_URL.into());
    let schema = std::env::var("KEYGATE_DATABASE_SCHEMA").ok();
    let service = start(&database_url, schema.as_deref(), server_key()?).await?;
    let admin = service.admin_token.clone();

    let listener = tokio::net::TcpListener::bind(addr).await?;
    let addr = listener.local_addr()?;
    println!("keygate example service listening on http://{addr}");
    println!("Web console: http://{addr}/console (sign in with a token holding tokens:console)");
    println!("OpenAPI document of the admin API: http://{addr}{ADMIN_PREFIX}/openapi.json");
    if let Some(token) = admin {
        println!();
        println!("Admin token (shown once, keep it safe):");
        println!("  {token}");
        println!();
        println!("Try:");
        println!("  curl -H \"Authorization: Bearer {token}\" http://{addr}/api/whoami");
        println!("  curl -H \"Authorization: Bearer {token}\" http://{addr}/api/projects");
        println!(
            "  curl -H \"Authorization: Bearer {token}\" -H 'Content-Type: application/json' \\\n       -d '{{\"name\":\"ci\",\"scopes\":[\"projects:read\"],\"expires\":\"7d\"}}' http://{addr}{ADMIN_PREFIX}"
        );
        println!();
    }
    // On SIGTERM or SIGINT: stop accepting, let in-flight requests finish (so no token is
    // committed without its response reaching the client), for at most DRAIN_TIMEOUT.
    let signalled = std::sync::Arc::new(tokio::sync::Notify::new());
    let on_signal = std::sync::Arc::clone(&signalled);
    let serve = axum::serve(listener, app(service.keygate.clone())?)
        .with_graceful_shutdown(async move {
            shutdown_signal().await;
            eprintln!("shutting down: draining in-flight requests");
            on_signal.notify_one();
        })
        .into_future();
    tokio::select! {
        served = serve => served?,
        () = async {
            signalled.notified().await;
            tokio::time::sleep(DRAIN_TIMEOUT).await;
        } => eprintln!("shutting down: requests still running after {DRAIN_TIMEOUT:?}, exiting"),
    }
    Ok(())
}

/// How long a shutdown waits for in-flight requests.
const DRAIN_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Resolves on SIGINT (Ctrl-C) or, on Unix, SIGTERM (what `docker stop`, Kubernetes and
/// systemd send).
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
