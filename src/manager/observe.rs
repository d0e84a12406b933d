//! Where the manager records metrics ([`crate::metrics`] names them): without the
//! `metrics` feature each function is empty and the clock is not read.

use crate::error::VerifyError;

/// The start of a timed operation: an instant with the `metrics` feature.
#[cfg(feature = "metrics")]
#[derive(Clone, Copy)]
pub(crate) struct Started(std::time::Instant);

/// The start of a timed operation: nothing without the `metrics` feature.
#[cfg(not(feature = "metrics"))]
#[derive(Clone, Copy)]
pub(crate) struct Started;

/// Now, if anything will be timed.
pub(crate) fn start() -> Started {
    #[cfg(feature = "metrics")]
    return Started(std::time::Instant::now());
    #[cfg(not(feature = "metrics"))]
    Started
}

/// A verification ended with `result`.
pub(crate) fn verification<T>(started: Started, result: &Result<T, VerifyError>) {
    #[cfg(feature = "metrics")]
    {
        let outcome = match result {
            Ok(_) => "valid",
            Err(e) => e.code(),
        };
        // Literal label values make static keys: recording allocates nothing.
        macro_rules! count {
            ($($code:literal),*) => {
                match outcome {
                    $($code => ::metrics::counter!(
                        crate::metrics::VERIFICATIONS, "outcome" => $code
                    )
                    .increment(1),)*
                    other => ::metrics::counter!(
                        crate::metrics::VERIFICATIONS, "outcome" => other
                    )
                    .increment(1),
                }
            };
        }
        count!(
            "valid",
            "malformed",
            "bad_checksum",
            "unknown",
            "revoked",
            "disabled",
            "expired",
            "rotated_out",
            "ip_not_allowed",
            "store_unavailable"
        );
        ::metrics::histogram!(crate::metrics::VERIFICATION_SECONDS)
            .record(started.0.elapsed().as_secs_f64());
    }
    #[cfg(not(feature = "metrics"))]
    let _ = (started, result);
}

/// A store operation on the verification path ended.
#[derive(Clone, Copy)]
pub(crate) enum StoreOperation {
    FindByDigest,
    Touch,
}

/// A store operation on the verification path ended.
pub(crate) fn store_operation(started: Started, operation: StoreOperation) {
    #[cfg(feature = "metrics")]
    {
        // Literal label values make static keys: recording allocates nothing.
        let seconds = started.0.elapsed().as_secs_f64();
        match operation {
            StoreOperation::FindByDigest => ::metrics::histogram!(
                crate::metrics::STORE_SECONDS, "operation" => "find_by_digest"
            )
            .record(seconds),
            StoreOperation::Touch => {
                ::metrics::histogram!(crate::metrics::STORE_SECONDS, "operation" => "touch")
                    .record(seconds)
            }
        }
    }
    #[cfg(not(feature = "metrics"))]
    let _ = (started, operation);
}

/// A lookup in the verification cache hit or missed.
pub(crate) fn cache_lookup(hit: bool) {
    #[cfg(feature = "metrics")]
    if hit {
        ::metrics::counter!(crate::metrics::CACHE_LOOKUPS, "result" => "hit").increment(1);
    } else {
        ::metrics::counter!(crate::metrics::CACHE_LOOKUPS, "result" => "miss").increment(1);
    }
    #[cfg(not(feature = "metrics"))]
    let _ = hit;
}

/// A prune batch deleted `records`.
pub(crate) fn pruned(records: u64) {
    #[cfg(feature = "metrics")]
    ::metrics::counter!(crate::metrics::PRUNED_RECORDS).increment(records);
    #[cfg(not(feature = "metrics"))]
    let _ = records;
}

/// An expiry notice was handed to the notifier, which took it (`sent`) or failed.
pub(crate) fn expiry_notice(sent: bool) {
    #[cfg(feature = "metrics")]
    if sent {
        ::metrics::counter!(crate::metrics::EXPIRY_NOTICES, "outcome" => "sent").increment(1);
    } else {
        ::metrics::counter!(crate::metrics::EXPIRY_NOTICES, "outcome" => "failed").increment(1);
    }
    #[cfg(not(feature = "metrics"))]
    let _ = sent;
}
