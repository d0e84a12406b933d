//! The manager's size limits in the document.

use utoipa::openapi::OpenApi;

use crate::record::Limits;

pub(super) fn apply(_doc: &mut OpenApi, _limits: &Limits) {}
