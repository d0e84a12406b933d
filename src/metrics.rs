//! The metrics keygate records through the [`metrics`](https://docs.rs/metrics) facade
//! (feature `metrics`): names and labels, for dashboards and alerts.
//!
//! keygate installs no recorder: the application does (for Prometheus,
//! `metrics-exporter-prometheus`, as `examples/server.rs` does to serve `/metrics`).
//! Without a recorder every call is a no-op. Label values are fixed sets (no token id, no
//! owner), so the number of series stays bounded.
//!
//! | name | kind | labels |
//! |---|---|---|
//! | [`VERIFICATIONS`] | counter | `outcome`: `valid` or a [`VerifyError::code`](crate::VerifyError::code) |
//! | [`VERIFICATION_SECONDS`] | histogram | none |
//! | [`STORE_SECONDS`] | histogram | `operation`: `find_by_digest`, `touch` |
//! | [`CACHE_LOOKUPS`] | counter | `result`: `hit`, `miss` |
//! | [`PRUNED_RECORDS`] | counter | none |
//! | [`EXPIRY_NOTICES`] | counter | `outcome`: `sent`, `failed` |

/// Verifications by outcome: `outcome="valid"`, or the refusal's code (`unknown`,
/// `expired`, `store_unavailable`, ...).
pub const VERIFICATIONS: &str = "keygate_verifications_total";
/// Time of one [`TokenManager::verify`](crate::TokenManager::verify), whatever its outcome.
pub const VERIFICATION_SECONDS: &str = "keygate_verification_duration_seconds";
/// Time of the store operations on the verification path: the lookup by digest (in the
/// verification, on a cache miss or without a cache) and the background `last_used_at`
/// write.
pub const STORE_SECONDS: &str = "keygate_store_operation_duration_seconds";
/// Lookups in the verification cache, by result (the hit ratio is
/// `hit / (hit + miss)`); none without a cache.
pub const CACHE_LOOKUPS: &str = "keygate_cache_lookups_total";
/// Records deleted by [`TokenManager::prune`](crate::TokenManager::prune).
pub const PRUNED_RECORDS: &str = "keygate_pruned_records_total";
/// Expiry notices handed to the notifier by
/// [`TokenManager::notify_expiring`](crate::TokenManager::notify_expiring), by outcome.
pub const EXPIRY_NOTICES: &str = "keygate_expiry_notices_total";
