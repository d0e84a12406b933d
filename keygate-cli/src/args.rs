//! Command-line arguments (clap derive).

use clap::{ArgGroup, Args, Parser, Subcommand};
use keygate::ip::IpNet;
use keygate::{ExpiryPreset, Scope, TokenId, TokenStatus, scope::ProjectId};

/// Shown at the end of `keygate --help`.
const AFTER_HELP: &str = "\
Environment:
  KEYGATE_DATABASE_URL     the store: a SQLite file (`sqlite:PATH`, `sqlite://PATH` or a plain
                           path) or PostgreSQL (`postgres://...`, `postgresql://...`)
  KEYGATE_DATABASE_SCHEMA  PostgreSQL schema of keygate's tables (default `public`)
  KEYGATE_PEPPER           the server key, hex or base64 of at least 32 bytes; needed by
                           `token create`, `token rotate` and `token verify`. It is read from
                           the environment only, never from the command line.
  KEYGATE_PEPPER_VERSION   the key version new digests are recorded under (default 1)
  KEYGATE_TOKEN_PREFIX     the token prefix (default `kg`)
  KEYGATE_MAX_LIFETIME     the service's lifetime cap (`ExpiryPolicy::max_lifetime`), e.g.
                           365d: create, rotate and update refuse a longer expiry
  KEYGATE_REQUIRE_EXPIRY   set to true if the service requires an expiry (`never` refused)
  KEYGATE_AUDIT_LOG        append the audit events to this file (JSON lines) instead of
                           writing them to stderr
  USER, LOGNAME            the operator, recorded as `actor = cli:<user>` in audit events

Commands other than `migrate` never create or change keygate's tables: run `keygate migrate`
once first. Tokens are never accepted as arguments: `token verify` reads one from stdin.

Confirmation: `token revoke`, `token delete`, `token disable` of more than one token, and any
change that would leave no active token with the `*` scope ask before changing anything when
stdin is a terminal; otherwise they need `--yes`. `prune` is a dry run without `--yes`. Every change is audited (OWASP event names,
`actor = cli:<user>`) on stderr, or in the file named by `--audit-log`.

Exit codes:
  0  success
  1  `token verify`: the token is not valid
  2  usage or bad input (unknown id, bad id, scope, project or expiry, missing or short
     pepper, a change the token's state, the lifetime policy or the acting token does not
     allow), or a change that needed confirmation was not confirmed; nothing was changed
  3  the database is unreachable, failed, or is not migrated; nothing was changed
  4  the result could not be written to stdout (see the message)";

/// Bootstrap admin tokens and manage keygate API tokens directly in their store.
#[derive(Debug, Parser)]
#[command(name = "keygate", version, after_help = AFTER_HELP)]
pub(crate) struct Cli {
    /// Database URL: `sqlite:PATH`, a file path, or `postgres://...`.
    #[arg(
        long,
        env = "KEYGATE_DATABASE_URL",
        hide_env_values = true,
        global = true,
        help_heading = "Global options",
        value_name = "URL"
    )]
    pub(crate) database_url: Option<String>,

    /// PostgreSQL schema holding keygate's tables (default `public`).
    #[arg(
        long,
        env = "KEYGATE_DATABASE_SCHEMA",
        global = true,
        help_heading = "Global options",
        value_name = "SCHEMA"
    )]
    pub(crate) schema: Option<String>,

    /// Token prefix; must match the service's `TokenManagerBuilder::prefix`.
    #[arg(
        long,
        env = "KEYGATE_TOKEN_PREFIX",
        default_value = "kg",
        global = true,
        help_heading = "Global options",
        value_name = "PREFIX"
    )]
    pub(crate) token_prefix: String,

    /// Version of the server key in `KEYGATE_PEPPER`; must match the service's keyring.
    #[arg(
        long,
        env = "KEYGATE_PEPPER_VERSION",
        default_value_t = 1,
        global = true,
        help_heading = "Global options",
        value_name = "N"
    )]
    pub(crate) pepper_version: u32,

    /// The service's lifetime cap, e.g. `365d` (<N>d, <N>h, <N>m or <N>s): create, rotate and
    /// update refuse an expiry further from issue or the last rotation, as the service would.
    #[arg(
        long,
        env = "KEYGATE_MAX_LIFETIME",
        global = true,
        help_heading = "Global options",
        value_parser = parse_lifetime,
        value_name = "DURATION"
    )]
    pub(crate) max_lifetime: Option<std::time::Duration>,

    /// The service requires an expiry: `--expires never` is refused.
    #[arg(
        long,
        env = "KEYGATE_REQUIRE_EXPIRY",
        global = true,
        help_heading = "Global options"
    )]
    pub(crate) require_expiry: bool,

    /// Append the audit events to this file, one JSON object a line (default: stderr, as
    /// text).
    #[arg(
        long,
        env = "KEYGATE_AUDIT_LOG",
        global = true,
        help_heading = "Global options",
        value_name = "PATH"
    )]
    pub(crate) audit_log: Option<std::path::PathBuf>,

    /// Confirm destructive changes without asking (needed when stdin is not a terminal).
    #[arg(short = 'y', long, global = true, help_heading = "Global options")]
    pub(crate) yes: bool,

    #[command(subcommand)]
    pub(crate) command: Command,
}

/// The top-level commands.
#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Create or upgrade keygate's tables (idempotent; creates a SQLite file if missing).
    Migrate,
    /// Create, list, show, rotate, disable, enable, revoke, delete and verify tokens.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Server keys ("peppers").
    #[command(subcommand)]
    Pepper(PepperCommand),
    /// Delete the records of tokens revoked or expired more than --older-than ago, in
    /// batches; without --yes a dry run that only prints how many there are.
    Prune(PruneArgs),
    /// Print a shell completion script (e.g. `keygate completions bash > /etc/bash_completion.d/keygate`).
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Print a man page (roff) on stdout: `keygate man | man -l -`, or `keygate man token
    /// update` for the page of one command.
    Man {
        /// The command whose page to print (default: `keygate` itself).
        command: Vec<String>,
    },
}

/// `keygate token ...`
#[derive(Debug, Subcommand)]
pub(crate) enum TokenCommand {
    /// Create a token; prints only the token on stdout, shown once.
    Create(CreateArgs),
    /// List tokens (a table, or JSON with --json), newest first.
    List(ListArgs),
    /// List the active tokens that expire within a window and have not expired yet,
    /// soonest first (a table, or JSON with --json). Sends no notice.
    Expiring {
        /// How far ahead: <N>d, <N>h, <N>m or <N>s.
        #[arg(long, default_value = "30d", value_parser = parse_age, value_name = "DURATION")]
        within: std::time::Duration,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Show one token's settings (never its secret).
    Show {
        /// The token id.
        #[arg(value_parser = parse_id)]
        id: TokenId,
        /// Print JSON instead of `key: value` lines.
        #[arg(long)]
        json: bool,
    },
    /// Change a token's name, description, scopes, projects or expiry; prints what changed
    /// on stderr (never a secret).
    Update(UpdateArgs),
    /// Issue a new secret for a token; prints only the new token on stdout.
    Rotate(RotateArgs),
    /// Disable tokens (reversible with `enable`); more than one asks first.
    Disable(IdsArgs),
    /// Enable disabled tokens (revoked ones cannot be enabled).
    Enable(IdsArgs),
    /// Revoke tokens for good (the records are kept for audit); asks first.
    Revoke(IdsArgs),
    /// Delete tokens' records; asks first.
    Delete(IdsArgs),
    /// Read one token from stdin and print what it grants, or why it is not valid (exit 1).
    Verify {
        /// Print JSON instead of `key: value` lines.
        #[arg(long)]
        json: bool,
    },
}

/// `keygate prune`
#[derive(Debug, Args)]
pub(crate) struct PruneArgs {
    /// Prune tokens that ended (were revoked, or expired) more than this long ago, and whose
    /// rotation grace, if any, also ended that long ago: <N>d, <N>h, <N>m or <N>s (e.g. 90d).
    #[arg(long, value_parser = parse_age, value_name = "DURATION")]
    pub(crate) older_than: std::time::Duration,
    /// Records deleted per batch (each batch one transaction and one audit event).
    #[arg(long, default_value_t = keygate::manager::DEFAULT_PRUNE_BATCH,
          value_parser = clap::value_parser!(u64).range(1..=100_000), value_name = "N")]
    pub(crate) batch: u64,
}

/// `keygate pepper ...`
#[derive(Debug, Subcommand)]
pub(crate) enum PepperCommand {
    /// Print a fresh random server key (32 bytes, hex) for KEYGATE_PEPPER.
    Generate,
    /// Print how many tokens each server-key version still digests (`version tokens`
    /// lines): a key can be retired once no token needs it. Needs no KEYGATE_PEPPER.
    Usage,
}

/// `keygate token create`
#[derive(Debug, Args)]
pub(crate) struct CreateArgs {
    /// Human-readable name.
    pub(crate) name: String,
    /// Use this id (lower-case letters, digits, `-`, `_`) instead of a generated one.
    #[arg(long, value_parser = parse_id)]
    pub(crate) id: Option<TokenId>,
    /// Make an admin token: the `*` scope, which grants everything.
    #[arg(long, conflicts_with = "scopes")]
    pub(crate) admin: bool,
    /// A scope such as `projects:read` or `projects:*` (repeatable).
    #[arg(long = "scope", value_name = "SCOPE", value_parser = parse_scope)]
    pub(crate) scopes: Vec<Scope>,
    /// Restrict the token to this project (repeatable; default: all projects).
    #[arg(long = "project", value_name = "PROJECT", value_parser = parse_project)]
    pub(crate) projects: Vec<ProjectId>,
    /// 7d, 30d, 60d, 90d, <N>d, <N>h, never, or an RFC 3339 instant.
    #[arg(long, default_value = "30d", value_parser = parse_expiry, value_name = "EXPIRY")]
    pub(crate) expires: ExpiryPreset,
    /// The user or service the token acts for.
    #[arg(long, default_value = "admin")]
    pub(crate) owner: String,
    /// Description.
    #[arg(long, default_value = "")]
    pub(crate) description: String,
    /// Create the token disabled: it exists but is refused until `keygate token enable`.
    #[arg(long)]
    pub(crate) disabled: bool,
    /// Allow the token only from clients in this CIDR range, e.g. `10.0.0.0/8` or
    /// `2001:db8::/32`; a bare address is its host range (repeatable; default: any client).
    #[arg(long = "allow-ip", value_name = "CIDR", value_parser = parse_ip_range)]
    pub(crate) allowed_ips: Vec<IpNet>,
}

/// `keygate token list`
#[derive(Debug, Args)]
pub(crate) struct ListArgs {
    /// Only tokens whose name contains this text (ASCII case ignored).
    #[arg(long)]
    pub(crate) name: Option<String>,
    /// Only tokens of this owner.
    #[arg(long)]
    pub(crate) owner: Option<String>,
    /// Only tokens created by this creator (the command line records `cli`).
    #[arg(long)]
    pub(crate) created_by: Option<String>,
    /// Only tokens with this status: active, disabled or revoked.
    #[arg(long, value_parser = parse_status)]
    pub(crate) status: Option<TokenStatus>,
    /// Only tokens holding exactly this scope.
    #[arg(long, value_parser = parse_scope)]
    pub(crate) scope: Option<Scope>,
    /// Only tokens that may act on this project.
    #[arg(long, value_parser = parse_project)]
    pub(crate) project: Option<ProjectId>,
    /// Only tokens expiring before this (an RFC 3339 instant, or <N>d/<N>h from now).
    #[arg(long, value_parser = parse_instant, value_name = "WHEN")]
    pub(crate) expires_before: Option<ExpiryPreset>,
    /// Only tokens expiring after this, or never (an RFC 3339 instant, or <N>d/<N>h from now).
    #[arg(long, value_parser = parse_instant, value_name = "WHEN")]
    pub(crate) expires_after: Option<ExpiryPreset>,
    /// Only tokens whose current secret is digested under this server-key version (see
    /// `keygate pepper usage`).
    #[arg(long, value_name = "VERSION")]
    pub(crate) key_version: Option<u32>,
    /// At most this many tokens (default: all).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub(crate) limit: Option<u64>,
    /// Print a JSON array instead of a table.
    #[arg(long)]
    pub(crate) json: bool,
}

/// `keygate token update`
#[derive(Debug, Args)]
#[command(group(
    ArgGroup::new("change")
        .required(true)
        .multiple(true)
        .args(["name", "description", "scopes", "admin", "no_scopes", "projects", "all_projects", "allowed_ips", "any_ip", "expires"])
))]
pub(crate) struct UpdateArgs {
    /// The token id.
    #[arg(value_parser = parse_id)]
    pub(crate) id: TokenId,
    /// A new name.
    #[arg(long)]
    pub(crate) name: Option<String>,
    /// A new description (`""` clears it).
    #[arg(long)]
    pub(crate) description: Option<String>,
    /// The scopes, replacing the current set (repeatable).
    #[arg(long = "scope", value_name = "SCOPE", value_parser = parse_scope, conflicts_with_all = ["admin", "no_scopes"])]
    pub(crate) scopes: Vec<Scope>,
    /// Make it an admin token: the scopes become `*` alone.
    #[arg(long, conflicts_with = "no_scopes")]
    pub(crate) admin: bool,
    /// Remove every scope.
    #[arg(long)]
    pub(crate) no_scopes: bool,
    /// The projects, replacing the current ones (repeatable).
    #[arg(long = "project", value_name = "PROJECT", value_parser = parse_project, conflicts_with = "all_projects")]
    pub(crate) projects: Vec<ProjectId>,
    /// Let the token act on all projects.
    #[arg(long)]
    pub(crate) all_projects: bool,
    /// Allow the token only from clients in these CIDR ranges, replacing the current list
    /// (repeatable).
    #[arg(long = "allow-ip", value_name = "CIDR", value_parser = parse_ip_range, conflicts_with = "any_ip")]
    pub(crate) allowed_ips: Vec<IpNet>,
    /// Lift the IP restriction: allow the token from any client.
    #[arg(long)]
    pub(crate) any_ip: bool,
    /// A new expiry: 7d, 30d, 60d, 90d, <N>d, <N>h (from now), never, or an RFC 3339
    /// instant; within the lifetime cap counted from issue or the last rotation.
    #[arg(long, value_parser = parse_expiry, value_name = "EXPIRY")]
    pub(crate) expires: Option<ExpiryPreset>,
    /// Make the change on behalf of the token read from stdin: it may not grant scopes,
    /// projects or a lifetime beyond its own, nor reach tokens it could not have created
    /// (the admin API's rules). Needs KEYGATE_PEPPER.
    #[arg(long)]
    pub(crate) as_token: bool,
    /// Print the updated token's record view as JSON on stdout.
    #[arg(long)]
    pub(crate) json: bool,
}

/// `keygate token rotate`
#[derive(Debug, Args)]
pub(crate) struct RotateArgs {
    /// The token id.
    #[arg(value_parser = parse_id)]
    pub(crate) id: TokenId,
    /// How long the old secret keeps working: <N>d, <N>h, <N>m or <N>s, at most 30d
    /// (default 0: it stops at once).
    #[arg(long, value_parser = parse_grace, value_name = "DURATION")]
    pub(crate) grace: Option<std::time::Duration>,
    /// A new expiry (default: keep the current one).
    #[arg(long, value_parser = parse_expiry, value_name = "EXPIRY")]
    pub(crate) expires: Option<ExpiryPreset>,
    /// End the grace period of the previous secret now if it still runs (without this, a
    /// rotation inside that period is refused).
    #[arg(long)]
    pub(crate) end_grace: bool,
}

/// Token ids for `disable`, `enable`, `revoke` and `delete`.
#[derive(Debug, Args)]
pub(crate) struct IdsArgs {
    /// Token ids. Every id is checked before any is changed.
    #[arg(required = true, value_parser = parse_id, value_name = "ID")]
    pub(crate) ids: Vec<TokenId>,
}

fn parse_id(s: &str) -> Result<TokenId, String> {
    TokenId::new(s).map_err(|e| e.to_string())
}

fn parse_scope(s: &str) -> Result<Scope, String> {
    Scope::new(s).map_err(|e| e.to_string())
}

fn parse_project(s: &str) -> Result<ProjectId, String> {
    ProjectId::new(s).map_err(|e| e.to_string())
}

fn parse_ip_range(s: &str) -> Result<IpNet, String> {
    match keygate::ip::parse_list([s])
        .map_err(|e| e.to_string())?
        .pop()
    {
        Some(net) => Ok(net),
        None => Err("expected a CIDR range such as 10.0.0.0/8".to_owned()),
    }
}

fn parse_status(s: &str) -> Result<TokenStatus, String> {
    s.parse().map_err(|e: keygate::Error| e.to_string())
}

fn parse_expiry(s: &str) -> Result<ExpiryPreset, String> {
    s.parse().map_err(|e: keygate::Error| e.to_string())
}

/// An instant for a filter: like an expiry, but `never` means nothing here.
fn parse_instant(s: &str) -> Result<ExpiryPreset, String> {
    match parse_expiry(s)? {
        ExpiryPreset::Never => Err("expected an RFC 3339 instant or <N>d/<N>h from now".into()),
        p => Ok(p),
    }
}

fn parse_lifetime(s: &str) -> Result<std::time::Duration, String> {
    keygate::expiry::parse_duration(s)
        .filter(|d| !d.is_zero())
        .ok_or_else(|| "expected <N>d, <N>h, <N>m or <N>s (e.g. 365d), more than zero".to_owned())
}

fn parse_age(s: &str) -> Result<std::time::Duration, String> {
    keygate::expiry::parse_duration(s)
        .ok_or_else(|| "expected <N>d, <N>h, <N>m or <N>s (e.g. 90d)".to_owned())
}

fn parse_grace(s: &str) -> Result<std::time::Duration, String> {
    keygate::expiry::parse_duration(s)
        .filter(|d| *d <= keygate::manager::MAX_ROTATION_GRACE)
        .ok_or_else(|| "expected <N>d, <N>h, <N>m or <N>s (e.g. 24h), at most 30 days".to_owned())
}
