//! JSON Schemas of the core types that appear in the admin API's bodies, for the generated
//! OpenAPI document. Each one describes the type's serde form (see the `serde` impls in
//! [`crate::scope`] and [`crate::token`]) and its validation rule, so that a value the
//! schema accepts is one the type parses.

use std::borrow::Cow;

use utoipa::openapi::RefOr;
use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, OneOfBuilder, Schema, Type};
use utoipa::{PartialSchema, ToSchema};

use crate::scope::{MAX_SCOPE_LEN, ProjectId, Projects, Scope, ScopeSet};
use crate::token::{MAX_ID_LEN, TokenId};

/// The id rule of [`crate::token::validate_id_chars`], shared by token and project ids.
const ID_PATTERN: &str = "^[a-z0-9_-]+$";

/// The scope rule of [`crate::scope::check_scope`]: `:`-separated segments of `a-z`, `0-9`,
/// `_`, `-`, `.`, an optional final `*`, or `*` alone.
const SCOPE_PATTERN: &str = r"^(\*|[a-z0-9_.-]+(:[a-z0-9_.-]+)*(:\*)?)$";

fn id_schema(description: &str, example: &str) -> RefOr<Schema> {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .pattern(Some(ID_PATTERN))
        .min_length(Some(1))
        .max_length(Some(MAX_ID_LEN))
        .description(Some(description))
        .examples([example])
        .into()
}

impl PartialSchema for TokenId {
    fn schema() -> RefOr<Schema> {
        id_schema(
            "A token id: 1 to 64 of `a-z`, `0-9`, `-`, `_`. Public.",
            "ci-deploy",
        )
    }
}

impl ToSchema for TokenId {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("TokenId")
    }
}

impl PartialSchema for ProjectId {
    fn schema() -> RefOr<Schema> {
        id_schema(
            "A project id: 1 to 64 of `a-z`, `0-9`, `-`, `_`.",
            "website",
        )
    }
}

impl ToSchema for ProjectId {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("ProjectId")
    }
}

impl PartialSchema for Scope {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .pattern(Some(SCOPE_PATTERN))
            .min_length(Some(1))
            .max_length(Some(MAX_SCOPE_LEN))
            .description(Some(
                "A scope: `:`-separated segments of `a-z`, `0-9`, `_`, `-`, `.`; a final `*` \
                 matches any suffix, `*` alone is the super-admin scope.",
            ))
            .examples(["projects:read"])
            .into()
    }
}

impl ToSchema for Scope {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("Scope")
    }
}

impl PartialSchema for ScopeSet {
    fn schema() -> RefOr<Schema> {
        ArrayBuilder::new()
            .items(RefOr::Ref(utoipa::openapi::Ref::from_schema_name(
                Scope::name(),
            )))
            .description(Some(
                "A set of scopes (sorted, duplicates dropped). At most `Limits::max_scopes`.",
            ))
            .into()
    }
}

impl ToSchema for ScopeSet {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("ScopeSet")
    }

    fn schemas(schemas: &mut Vec<(String, RefOr<Schema>)>) {
        schemas.push((Scope::name().into(), Scope::schema()));
    }
}

impl PartialSchema for Projects {
    fn schema() -> RefOr<Schema> {
        OneOfBuilder::new()
            .item(
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .enum_values(Some(["*"]))
                    .description(Some("Every project.")),
            )
            .item(
                ArrayBuilder::new()
                    .items(RefOr::Ref(utoipa::openapi::Ref::from_schema_name(
                        ProjectId::name(),
                    )))
                    .description(Some(
                        "Only these projects (an empty list allows none). At most \
                         `Limits::max_projects`.",
                    )),
            )
            .description(Some(
                "Which projects a token may act on: `\"*\"` or a list.",
            ))
            .into()
    }
}

impl ToSchema for Projects {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("Projects")
    }

    fn schemas(schemas: &mut Vec<(String, RefOr<Schema>)>) {
        schemas.push((ProjectId::name().into(), ProjectId::schema()));
    }
}
