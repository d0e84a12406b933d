//! The example service and the command line share a store: a token created by `keygate token
//! create` is accepted by the service's API, and once `keygate token revoke` revoked it, the
//! service refuses it. Runs the real binary and the example's own code, on SQLite and on
//! PostgreSQL.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a panic is a test failure"
)]

mod cli_support;
#[allow(dead_code, reason = "the example's `main` is not called by the tests")]
#[path = "../../examples/server.rs"]
mod server;

use std::time::{Duration, Instant};

use cli_support::{Cli, PgSchema, block_on};
use keygate::ServerKey;

async fn get(client: &reqwest::Client, url: &str, token: &str) -> (u16, String) {
    let r = client.get(url).bearer_auth(token).send().await.unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

fn cli_token_accepted_then_refused(cli: Cli) {
    cli.migrate();
    let token = cli.create_token("ci", &["--scope", "projects:read", "--owner", "ci-bot"]);
    let id = token.split('_').nth(1).unwrap().to_owned();
    block_on(async {
        let key = ServerKey::decode(cli.pepper.as_deref().unwrap()).unwrap();
        let service = server::start(&cli.url, cli.schema.as_deref(), key)
            .await
            .unwrap();
        let app = server::app(service.keygate.clone()).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let server = tokio::spawn(async move { axum::serve(listener, app).await });
        let client = reqwest::Client::new();

        let (status, body) = get(&client, &format!("{base}/api/whoami"), &token).await;
        assert_eq!(status, 200, "{body}");
        assert!(body.contains(&id) && body.contains("ci-bot"), "{body}");
        let (status, _) = get(&client, &format!("{base}/api/projects"), &token).await;
        assert_eq!(status, 200, "projects:read granted by the CLI");
        let r = client
            .post(format!("{base}/api/projects"))
            .bearer_auth(&token)
            .json(&serde_json::json!({"id": "x", "name": "x"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 403, "projects:write was not granted");

        // Revoke with the command line (another process), then the service refuses the token:
        // at once on SQLite (no cache), within the notification latency on PostgreSQL.
        let revoke = cli.clone();
        let id2 = id.clone();
        tokio::task::spawn_blocking(move || {
            revoke
                .run(&["token", "revoke", &id2, "--yes"])
                .expect_code(0)
        })
        .await
        .unwrap();
        let started = Instant::now();
        loop {
            let (status, body) = get(&client, &format!("{base}/api/projects"), &token).await;
            if status == 401 {
                assert!(body.contains("invalid_token"), "{body}");
                break;
            }
            assert_eq!(status, 200);
            assert!(
                started.elapsed() < Duration::from_secs(6),
                "the revoked token was still accepted after the cache TTL"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        server.abort();
    });
}

#[test]
fn sqlite_cli_and_service_share_tokens() {
    let dir = tempfile::tempdir().unwrap();
    cli_token_accepted_then_refused(Cli::sqlite(&dir.path().join("tokens.db")));
}

#[test]
fn postgres_cli_and_service_share_tokens() {
    let Some(schema) = PgSchema::new() else {
        return;
    };
    cli_token_accepted_then_refused(schema.cli());
}
