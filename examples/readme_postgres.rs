//! README, storage with PostgreSQL (features `postgres`): several instances, one database.

use keygate::cache::CacheConfig;
use keygate::{PostgresStore, ServerKey, TokenManager};

#[tokio::main]
async fn main() -> Result<(), keygate::Error> {
    let url = std::env::var("DATABASE_URL").unwrap_or_else(|_| "postgres://app@db/app".into());
    let store = PostgresStore::connect(&url).await?.with_schema("auth")?;
    store.migrate().await?;
    let manager = TokenManager::builder(store.clone())
        .server_key(ServerKey::decode(
            &std::env::var("KEYGATE_PEPPER").unwrap_or_default(),
        )?)
        .cache(CacheConfig::new())
        .build()?;
    // Other instances' revocations reach this cache within the notification latency, and
    // within the cache TTL (default 5 s) even if a notification is lost. Keep the handle:
    // dropping it stops the listener.
    let _listener = store.spawn_invalidation_listener(manager.clone()).await?;
    Ok(())
}
