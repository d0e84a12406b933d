//! Shared HTTP credential parsing and RFC 6750 responses (feature `tower`).
