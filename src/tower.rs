//! The `RequireToken` tower layer (feature `tower`).
