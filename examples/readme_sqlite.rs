//! README, storage with SQLite (features `sqlite`): the embedded default.

use keygate::{ServerKey, SqliteStore, TokenManager};

#[tokio::main]
async fn main() -> Result<(), keygate::Error> {
    // Creates the file on first start (WAL mode, 5 s busy timeout); `migrate` creates or
    // upgrades keygate's tables (prefix `keygate_`, beside your own).
    let store = SqliteStore::connect("sqlite:keygate.db").await?;
    store.migrate().await?;
    let manager = TokenManager::builder(store)
        .server_key(ServerKey::decode(
            &std::env::var("KEYGATE_PEPPER").unwrap_or_default(),
        )?)
        .build()?;
    println!("{manager:?}");
    Ok(())
}
