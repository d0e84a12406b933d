//! The page layout and small pieces of markup shared by the pages.

use chrono::{DateTime, Utc};
use maud::{DOCTYPE, Markup, html};

use super::Mode;
use super::handlers::Ctx;
use crate::expiry::Expiry;
use crate::record::{TokenRecord, TokenStatus};
use crate::scope::Projects;

/// A whole page: header with navigation, then `body`.
pub(super) fn layout(ctx: &Ctx, title: &str, app_title: &str, body: Markup) -> Markup {
    let base = &ctx.base;
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · " (app_title) }
                link rel="stylesheet" href={ (base) "/assets/console.css" };
                script src={ (base) "/assets/console.js" } defer {}
            }
            body {
                header {
                    span.brand { (app_title) }
                    @if let Some(op) = &ctx.operator {
                        nav aria-label="Main" {
                            @if op.mode() == Mode::Operator {
                                a href={ (base) "/tokens" } { "Tokens" }
                            }
                            a href={ (base) "/my" } { "My tokens" }
                            a href={ (base) "/new" } { "Create token" }
                        }
                        span { "Signed in as " strong { (op.name()) } }
                        @if ctx.token_sign_in {
                            form method="post" action={ (base) "/sign-out" } {
                                (csrf(ctx))
                                button.link type="submit" { "Sign out" }
                            }
                        }
                    }
                }
                main { (body) }
            }
        }
    }
}

/// The hidden CSRF field every form carries.
pub(super) fn csrf(ctx: &Ctx) -> Markup {
    html! { input type="hidden" name="csrf" value=(ctx.csrf); }
}

pub(super) fn status_badge(r: &TokenRecord) -> Markup {
    let s = r.status;
    html! { span class={ "badge " (s.as_str()) } { (status_label(s)) } }
}

pub(super) fn status_label(s: TokenStatus) -> &'static str {
    match s {
        TokenStatus::Active => "enabled",
        TokenStatus::Disabled => "disabled",
        TokenStatus::Revoked => "revoked",
    }
}

pub(super) fn relative(at: DateTime<Utc>, now: DateTime<Utc>) -> String {
    let d = at - now;
    let (past, d) = if d < chrono::Duration::zero() {
        (true, -d)
    } else {
        (false, d)
    };
    let amount = if d.num_days() >= 1 {
        format!(
            "{} day{}",
            d.num_days(),
            if d.num_days() == 1 { "" } else { "s" }
        )
    } else if d.num_hours() >= 1 {
        format!(
            "{} hour{}",
            d.num_hours(),
            if d.num_hours() == 1 { "" } else { "s" }
        )
    } else {
        format!("{} min", d.num_minutes().max(1))
    };
    if past {
        format!("{amount} ago")
    } else {
        format!("in {amount}")
    }
}

pub(super) fn instant(at: DateTime<Utc>, now: DateTime<Utc>) -> Markup {
    html! {
        time datetime=(at.to_rfc3339()) title=(at.format("%Y-%m-%d %H:%M UTC").to_string()) {
            (relative(at, now))
        }
        br;
        span.hint { (at.format("%Y-%m-%d %H:%M UTC").to_string()) }
    }
}

/// Expiry, relative and absolute, with "expired" and "expiring soon" (within 7 days) marked.
pub(super) fn expiry(e: &Expiry, now: DateTime<Utc>) -> Markup {
    match e {
        Expiry::Never => html! { "never" },
        Expiry::At(at) => {
            let soon = *at > now && *at - now <= chrono::Duration::days(7);
            html! {
                (instant(*at, now))
                @if *at <= now { " " span.badge.expired { "expired" } }
                @if soon { " " span.badge.soon { "expiring soon" } }
            }
        }
    }
}

pub(super) fn projects(p: &Projects) -> String {
    match p {
        Projects::All => "all projects".to_owned(),
        Projects::Only(set) => set
            .iter()
            .map(|p| p.as_str())
            .collect::<Vec<_>>()
            .join(", "),
    }
}

pub(super) fn field_error(errors: &[(&'static str, String)], field: &str) -> Markup {
    html! {
        @for (f, msg) in errors {
            @if *f == field {
                p.error id={ "e-" (field) } role="alert" { (msg) }
            }
        }
    }
}

pub(super) fn has_error(errors: &[(&'static str, String)], field: &str) -> bool {
    errors.iter().any(|(f, _)| *f == field)
}
