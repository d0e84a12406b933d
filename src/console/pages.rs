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
    // Rounded to the nearest unit: a token made for 30 days reads "in 30 days" a second later.
    let secs = d.num_seconds();
    let plural = |n: i64, unit: &str| format!("{n} {unit}{}", if n == 1 { "" } else { "s" });
    let amount = if secs >= 86_400 {
        plural((secs + 43_200) / 86_400, "day")
    } else if secs >= 3_600 {
        plural((secs + 1_800) / 3_600, "hour")
    } else {
        format!("{} min", ((secs + 30) / 60).max(1))
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

/// Allowed IP ranges, comma-separated (empty for any client), as the edit form takes them.
pub(super) fn allowed_ips(list: &[crate::ip::IpNet]) -> String {
    list.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
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

#[cfg(test)]
mod tests {
    use super::relative;
    use chrono::{Duration, TimeZone, Utc};

    #[test]
    fn relative_times_round_to_the_nearest_unit() {
        let now = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
        let cases = [
            (Duration::days(30) - Duration::seconds(5), "in 30 days"),
            (Duration::days(1), "in 1 day"),
            (Duration::hours(36), "in 2 days"),
            (Duration::hours(35), "in 1 day"),
            (Duration::minutes(90), "in 2 hours"),
            (Duration::minutes(59), "in 59 min"),
            (Duration::seconds(10), "in 1 min"),
            (-Duration::days(3), "3 days ago"),
            (-Duration::hours(1), "1 hour ago"),
        ];
        for (d, text) in cases {
            assert_eq!(relative(now + d, now), text, "{d}");
        }
    }
}
