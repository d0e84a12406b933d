//! What goes to stdout: tokens, tables, `key: value` lines and JSON. Never a digest.

use std::io::Write;

use chrono::{DateTime, SecondsFormat, Utc};
use keygate::{Projects, ScopeSet, TokenRecord, TokenStatus};
use serde_json::Value;
use unicode_width::UnicodeWidthStr;

use crate::fail::Failure;

/// Writes `text` and a newline to stdout and flushes; `what` names it in the error.
pub(crate) fn line(what: &str, text: &str) -> Result<(), Failure> {
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())
        .and_then(|()| out.write_all(b"\n"))
        .and_then(|()| out.flush())
        .map_err(|e| Failure::output(what, &e))
}

/// Writes `text` (already ending in a newline) to stdout and flushes.
pub(crate) fn text(what: &str, text: &str) -> Result<(), Failure> {
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .map_err(|e| Failure::output(what, &e))
}

/// An instant as `2027-01-31T00:00:00Z`.
pub(crate) fn instant(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

fn opt_instant(t: Option<DateTime<Utc>>) -> String {
    t.map_or_else(|| "never".to_owned(), instant)
}

fn scopes(s: &ScopeSet) -> String {
    if s.is_empty() {
        return "-".to_owned();
    }
    s.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(",")
}

fn projects(p: &Projects) -> String {
    match p {
        Projects::All => "all".to_owned(),
        Projects::Only(set) if set.is_empty() => "none".to_owned(),
        Projects::Only(set) => set.iter().map(|p| p.as_str()).collect::<Vec<_>>().join(","),
    }
}

/// The status as shown: `expired` for an active token past its expiry.
fn shown_status(r: &TokenRecord, now: DateTime<Utc>) -> &'static str {
    if r.status == TokenStatus::Active && r.expiry.is_expired_at(now) {
        "expired"
    } else {
        r.status.as_str()
    }
}

/// Free text on one line: newlines and tabs (the only control characters keygate
/// accepts in names and descriptions) become `\n` and `\t`.
fn one_line(s: &str) -> String {
    s.replace('\n', "\\n").replace('\t', "\\t")
}

/// The columns a cell takes in a terminal: East Asian wide characters and emoji take two,
/// combining marks none (Unicode's `East_Asian_Width`, through `unicode-width`).
fn cells(s: &str) -> usize {
    s.width()
}

/// The list table: id, name, owner, status, scopes, expires, last used. Columns are padded
/// to their widest cell in terminal columns, not in characters, so that wide names (CJK,
/// emoji) keep the later columns aligned.
pub(crate) fn table(records: &[TokenRecord], now: DateTime<Utc>) -> String {
    let header = [
        "ID",
        "NAME",
        "OWNER",
        "STATUS",
        "SCOPES",
        "EXPIRES",
        "LAST USED",
    ];
    let rows: Vec<[String; 7]> = records
        .iter()
        .map(|r| {
            [
                r.id.to_string(),
                one_line(&r.name),
                one_line(&r.owner),
                shown_status(r, now).to_owned(),
                scopes(&r.scopes),
                opt_instant(r.expiry.at()),
                opt_instant(r.last_used_at),
            ]
        })
        .collect();
    let mut widths = header.map(cells);
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cells(cell));
        }
    }
    let mut out = String::new();
    let mut push_row = |row: &[&str]| {
        let mut line = String::new();
        for (i, (cell, w)) in row.iter().zip(widths).enumerate() {
            line.push_str(cell);
            if i + 1 < row.len() {
                let pad = w - cells(cell) + 2;
                line.extend(std::iter::repeat_n(' ', pad));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    };
    push_row(&header);
    for row in &rows {
        push_row(&row.each_ref().map(String::as_str));
    }
    out
}

/// A record as JSON: the shared record view of the admin API (no digests).
pub(crate) fn record_json(r: &TokenRecord, now: DateTime<Utc>) -> Value {
    serde_json::to_value(keygate::record::TokenView::new(r, now)).unwrap_or(Value::Null)
}

/// Allowed IP ranges, comma-separated; `any` for an empty list.
fn allowed_ips(list: &[keygate::ip::IpNet]) -> String {
    if list.is_empty() {
        return "any".to_owned();
    }
    list.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// A record as `key: value` lines.
pub(crate) fn record_lines(r: &TokenRecord, now: DateTime<Utc>) -> String {
    let mut rows = vec![
        ("id", r.id.to_string()),
        ("name", one_line(&r.name)),
        ("description", one_line(&r.description)),
        ("owner", one_line(&r.owner)),
        ("created by", one_line(&r.created_by)),
        ("created at", instant(r.created_at)),
        ("updated at", instant(r.updated_at)),
        ("status", shown_status(r, now).to_owned()),
        ("scopes", scopes(&r.scopes)),
        ("projects", projects(&r.projects)),
        ("allowed ips", allowed_ips(&r.allowed_ips)),
        ("expires", opt_instant(r.expiry.at())),
        ("last used", opt_instant(r.last_used_at)),
    ];
    if let Some(p) = r.retired.first() {
        if p.valid_until > now {
            rows.push(("previous secret valid until", instant(p.valid_until)));
        }
    }
    for (k, v) in &r.metadata {
        rows.push(("metadata", format!("{}={}", one_line(k), one_line(v))));
    }
    rows.into_iter()
        .map(|(k, v)| format!("{k}: {v}\n"))
        .collect()
}

/// What `token update` changed, one `  field: old -> new` line per changed setting (empty if
/// nothing changed). Free text is quoted, as JSON strings are, so that an empty or
/// space-padded value stays visible. Never a digest or a secret.
pub(crate) fn diff(before: &TokenRecord, after: &TokenRecord) -> String {
    let quoted = |s: &str| serde_json::to_string(s).unwrap_or_else(|_| one_line(s));
    let fields = [
        ("name", quoted(&before.name), quoted(&after.name)),
        (
            "description",
            quoted(&before.description),
            quoted(&after.description),
        ),
        ("scopes", scopes(&before.scopes), scopes(&after.scopes)),
        (
            "projects",
            projects(&before.projects),
            projects(&after.projects),
        ),
        (
            "allowed ips",
            allowed_ips(&before.allowed_ips),
            allowed_ips(&after.allowed_ips),
        ),
        (
            "expires",
            opt_instant(before.expiry.at()),
            opt_instant(after.expiry.at()),
        ),
    ];
    fields
        .iter()
        .filter(|(_, old, new)| old != new)
        .map(|(k, old, new)| format!("  {k}: {old} -> {new}\n"))
        .collect()
}

/// Serializes JSON with a trailing newline.
pub(crate) fn json_text(v: &Value) -> String {
    let mut s = serde_json::to_string_pretty(v).unwrap_or_else(|_| "null".to_owned());
    s.push('\n');
    s
}
