//! The life of an API token, in memory: issue, verify, rotate with a grace period, revoke,
//! list. Prints what it does; never prints a stored secret or digest.
//!
//! Run: `cargo run --example quickstart`

use keygate::{
    ExpiryPreset, IssueRequest, MemoryStore, Projects, RotateRequest, Scope, ScopeSet, ServerKey,
    TokenManager, expiry::ManualClock, store::PageRequest, store::TokenFilter,
};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // A manual clock lets the example fast-forward through the grace period.
    let clock = ManualClock::new(chrono::Utc::now());
    // In a real service the server key comes from the environment or a vault.
    let manager = TokenManager::builder(MemoryStore::new())
        .server_key(ServerKey::generate())
        .prefix("demo")
        .clock(clock.clone())
        .build()?;

    let issued = manager
        .issue(
            IssueRequest::new("ci deploy", "alice")
                .description("deploys the web app")
                .scopes(ScopeSet::parse(["projects:read", "projects:write"])?)
                .projects(Projects::only(["web"])?)
                .expiry(ExpiryPreset::Days30),
        )
        .await?;
    println!(
        "issued token id={} for owner=alice, expires {:?}",
        issued.id(),
        issued.record().expiry
    );
    // The plaintext is returned once and never stored: hand it to the user, then drop it.
    // Here only its public part is printed.
    let public_part = format!("{}_{}_", manager.format().prefix(), issued.id());
    println!(
        "  token string: {public_part}<{} characters of secret and checksum>",
        issued.expose_secret().len() - public_part.len()
    );

    let verified = manager.verify(issued.expose_secret()).await?;
    println!(
        "verified: id={} owner={} scopes={:?}",
        verified.id(),
        verified.owner(),
        verified.scopes()
    );
    println!(
        "  grants projects:write? {}  grants tokens:write? {}",
        verified.grants(&Scope::new("projects:write")?),
        verified.grants(&Scope::new("tokens:write")?)
    );

    let old = issued.expose_secret().to_owned();
    let rotated = manager
        .rotate(
            issued.id(),
            RotateRequest::new().grace(std::time::Duration::from_secs(86400)),
        )
        .await?;
    println!("rotated: new secret issued, old one valid for 24 h");
    println!(
        "  old secret during grace: {}",
        outcome(manager.verify(&old).await.map(|v| v.used_previous_secret()))
    );
    clock.advance(std::time::Duration::from_secs(90000));
    println!(
        "  old secret after grace: {}",
        outcome(manager.verify(&old).await.map(|_| true))
    );
    println!(
        "  new secret: {}",
        outcome(manager.verify(rotated.expose_secret()).await.map(|_| true))
    );

    manager.revoke(issued.id()).await?;
    println!(
        "revoked: new secret now -> {}",
        outcome(manager.verify(rotated.expose_secret()).await.map(|_| true))
    );

    manager
        .issue(
            IssueRequest::new("metrics reader", "bob").scopes(ScopeSet::parse(["metrics:read"])?),
        )
        .await?;
    let page = manager
        .list(&TokenFilter::new(), &PageRequest::first(10))
        .await?;
    println!("all tokens, newest first:");
    for r in &page.items {
        println!(
            "  {:<18} {:<16} owner={:<6} status={}",
            r.id.as_str(),
            r.name,
            r.owner,
            r.status
        );
    }
    Ok(())
}

fn outcome<T: std::fmt::Debug>(r: Result<T, keygate::VerifyError>) -> String {
    match r {
        Ok(v) => format!("accepted ({v:?})"),
        Err(e) => format!("refused: {e}"),
    }
}
