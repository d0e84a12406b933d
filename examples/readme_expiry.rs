//! README, expiry notices (no features; the notifier uses the `async-trait` crate).

use std::time::Duration;

use keygate::expiry::{ExpiryNotice, ExpiryNotifier, ExpiryWindows};
use keygate::{ExpiryPreset, IssueRequest, MemoryStore, ServerKey, TokenManager, TokenRecord};

struct Mail;

#[async_trait::async_trait]
impl ExpiryNotifier for Mail {
    async fn token_expiring(
        &self,
        record: &TokenRecord,
        notice: &ExpiryNotice,
    ) -> Result<(), keygate::error::BoxError> {
        // Queue a mail to the owner rather than sending it here: a notice is marked sent
        // before this runs, so that two instances never both send it.
        println!(
            "to {}: your token {:?} expires at {} (within {} days)",
            record.owner,
            record.name,
            notice.expires_at,
            notice.window.as_secs() / 86_400
        );
        Ok(())
    }
}

#[tokio::main]
async fn main() -> Result<(), keygate::Error> {
    let manager = TokenManager::builder(MemoryStore::new())
        .server_key(ServerKey::generate())
        .build()?;
    let five_days = ExpiryPreset::In(Duration::from_secs(5 * 86_400));
    manager
        .issue(IssueRequest::new("deploy", "alice").expiry(five_days))
        .await?;

    // 60, 30 and 7 days ahead, and at expiry. Run this periodically (hourly, say).
    let windows = ExpiryWindows::default();
    let report = manager.notify_expiring(&windows, &Mail).await?;
    assert_eq!(report.sent, 1); // the 7-day notice
    let again = manager.notify_expiring(&windows, &Mail).await?;
    assert_eq!(again.sent, 0); // each window is told once
    Ok(())
}
