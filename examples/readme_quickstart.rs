//! README, quick start (no features): issue, verify, authorize, rotate, revoke.

use keygate::{IssueRequest, MemoryStore, RotateRequest, Scope, ScopeSet, ServerKey, TokenManager};

#[tokio::main]
async fn main() -> Result<(), keygate::Error> {
    // The server key ("pepper") comes from your secret store: 32 bytes or more, hex or base64.
    let key = match std::env::var("KEYGATE_PEPPER") {
        Ok(text) => ServerKey::decode(&text)?,
        Err(_) => ServerKey::generate(), // for a demo only: tokens die with the process
    };
    let manager = TokenManager::builder(MemoryStore::new())
        .server_key(key)
        .prefix("acme")
        .build()?;

    // Issue: the plaintext is returned once. Show it to the user, then drop it.
    let issued = manager
        .issue(IssueRequest::new("ci deploy", "alice").scopes(ScopeSet::parse(["projects:read"])?))
        .await?;
    let presented = issued.expose_secret();

    // Verify what a client presents, then check what it may do (audited as `authz_fail`
    // when refused).
    let verified = manager.verify(presented).await?;
    manager.authorize(&verified, &Scope::new("projects:read")?)?;
    println!("{} may read projects", verified.owner());

    // Rotate (the old secret stops at once; give a grace period to overlap), then revoke.
    let rotated = manager.rotate(issued.id(), RotateRequest::new()).await?;
    manager.revoke(rotated.id()).await?;
    assert!(manager.verify(rotated.expose_secret()).await.is_err());
    Ok(())
}
