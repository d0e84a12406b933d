//! axum extractors, rejection and the admin router (feature `axum`).
