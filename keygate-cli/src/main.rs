//! `keygate`: bootstrap admin tokens and manage keygate API tokens from a shell, directly
//! in their store (SQLite or PostgreSQL). Run `keygate --help` for the commands, the
//! environment variables and the exit codes.
//!
//! stdout carries only the result (a token, a key, a table, JSON, a completion script or a
//! man page); every message, and by default the audit trail, goes to stderr. Tokens are never
//! read from arguments and never written to stderr; the server key is printed only by
//! `keygate pepper generate`. Destructive changes are confirmed first (see [`confirm`]);
//! every change is audited with the operator as the actor (see [`audit`]).

mod args;
mod audit;
mod confirm;
mod db;
mod fail;
mod output;

use std::io::{BufRead, IsTerminal, Read};
use std::process::ExitCode;

use clap::{CommandFactory, Parser};
use keygate::{
    IssueRequest, Projects, RotateRequest, Scope, ScopeSet, ServerKey, TokenId, TokenManager,
    TokenRecord, TokenStatus, TokenUpdate, VerifiedToken, VerifyError, digest::Keyring,
    expiry::ExpiryPolicy, store::PageRequest, store::TokenFilter, store::TokenStore,
};
use zeroize::Zeroizing;

use args::{
    Cli, Command, CreateArgs, IdsArgs, ListArgs, PepperCommand, PruneArgs, RotateArgs,
    TokenCommand, UpdateArgs,
};
use confirm::Confirm;
use db::Location;
use fail::{EXIT_INVALID, EXIT_OK, Failure};

/// `created_by` of every token the command line creates.
const CREATED_BY: &str = "cli";

/// Longest line `token verify` reads (a token is far shorter; longer input is not one).
const MAX_TOKEN_LINE: u64 = 1024;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            return Failure::new(fail::EXIT_STORE, format!("cannot start the runtime: {e}"))
                .report();
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => ExitCode::from(code),
        Err(failure) => failure.report(),
    }
}

async fn run(cli: Cli) -> Result<u8, Failure> {
    let mut policy = ExpiryPolicy::unrestricted();
    if cli.require_expiry {
        policy = policy.require_expiry();
    }
    if let Some(max) = cli.max_lifetime {
        policy = policy.max_lifetime(max);
    }
    let ctx = Context {
        location: cli.database_url.as_deref(),
        schema: cli.schema.as_deref(),
        prefix: &cli.token_prefix,
        pepper_version: cli.pepper_version,
        policy,
        confirm: Confirm { yes: cli.yes },
    };
    match cli.command {
        Command::Pepper(PepperCommand::Generate) => {
            output::line("the server key", &ServerKey::generate().expose_hex())?;
            Ok(EXIT_OK)
        }
        Command::Pepper(PepperCommand::Usage) => pepper_usage(&ctx).await,
        Command::Completions { shell } => {
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "keygate", &mut script);
            output::text("the completion script", &String::from_utf8_lossy(&script))?;
            Ok(EXIT_OK)
        }
        Command::Man { command } => {
            output::text("the man page", &man_page(&command)?)?;
            Ok(EXIT_OK)
        }
        Command::Migrate => {
            audit::init(cli.audit_log.as_deref())?;
            ctx.location()?.migrate().await?;
            eprintln!("keygate: the database is migrated");
            Ok(EXIT_OK)
        }
        Command::Token(cmd) => {
            audit::init(cli.audit_log.as_deref())?;
            token(&ctx, cmd).await
        }
        Command::Prune(a) => {
            audit::init(cli.audit_log.as_deref())?;
            prune(&ctx, a).await
        }
    }
}

/// `keygate prune`: without `--yes` a dry run printing the cutoff and the count; with it, the
/// deletion in batches (each audited as `authn_token_pruned`), printing what was deleted.
async fn prune(ctx: &Context<'_>, a: PruneArgs) -> Result<u8, Failure> {
    let manager = ctx.open(false).await?;
    let older_than = chrono::Duration::from_std(a.older_than)
        .map_err(|_| Failure::usage("--older-than is out of range"))?;
    let cutoff = manager.now() - older_than;
    if !ctx.confirm.yes {
        let count = manager
            .prunable(a.older_than)
            .await
            .map_err(Failure::from_error)?;
        output::text(
            "the prune counts",
            &format!("cutoff: {}\nprunable: {count}\n", output::instant(cutoff)),
        )?;
        eprintln!(
            "keygate: dry run: {count} token records ended before {}; pass --yes to delete \
             them",
            output::instant(cutoff)
        );
        return Ok(EXIT_OK);
    }
    let report = manager
        .prune(a.older_than, a.batch)
        .await
        .map_err(Failure::from_error)?;
    output::text(
        "the prune report",
        &format!(
            "cutoff: {}\ndeleted: {}\nbatches: {}\n",
            output::instant(report.cutoff),
            report.deleted,
            report.batches
        ),
    )?;
    eprintln!(
        "keygate: deleted {} token records that ended before {}",
        report.deleted,
        output::instant(report.cutoff)
    );
    Ok(EXIT_OK)
}

/// The man page of `keygate` or of one of its commands (`["token", "update"]`), as roff.
fn man_page(path: &[String]) -> Result<String, Failure> {
    let mut cmd = Cli::command();
    cmd.build();
    let mut name = String::from("keygate");
    for part in path {
        let Some(sub) = cmd.find_subcommand(part).cloned() else {
            return Err(Failure::usage(format!(
                "no command `{part}` in `{}`: see `{} --help`",
                name.replace('-', " "),
                name.replace('-', " ")
            )));
        };
        name = format!("{name}-{part}");
        cmd = sub;
    }
    let cmd = cmd.name(name.clone()).bin_name(name.replace('-', " "));
    let mut page = Vec::new();
    clap_mangen::Man::new(cmd)
        .render(&mut page)
        .map_err(|e| Failure::usage(format!("cannot render the man page: {e}")))?;
    Ok(String::from_utf8_lossy(&page).into_owned())
}

/// The global options.
struct Context<'a> {
    location: Option<&'a str>,
    schema: Option<&'a str>,
    prefix: &'a str,
    pepper_version: u32,
    /// The service's expiry policy, as told by `--max-lifetime` and `--require-expiry`.
    policy: ExpiryPolicy,
    confirm: Confirm,
}

impl Context<'_> {
    fn location(&self) -> Result<Location, Failure> {
        Location::parse(self.location, self.schema)
    }

    /// The keyring from `KEYGATE_PEPPER`, for commands that compute digests.
    fn keyring(&self) -> Result<Keyring, Failure> {
        let text = match std::env::var("KEYGATE_PEPPER") {
            Ok(text) if !text.trim().is_empty() => Zeroizing::new(text),
            Ok(_) | Err(std::env::VarError::NotPresent) => {
                return Err(Failure::usage(
                    "KEYGATE_PEPPER is not set: set it to the service's server key \
                     (create one with `keygate pepper generate`)",
                ));
            }
            Err(std::env::VarError::NotUnicode(_)) => {
                return Err(Failure::usage("KEYGATE_PEPPER is not valid UTF-8"));
            }
        };
        let key =
            ServerKey::decode(&text).map_err(|e| Failure::usage(format!("KEYGATE_PEPPER: {e}")))?;
        Ok(Keyring::new(self.pepper_version, key))
    }

    /// A manager over `store`. Commands that compute no digest (list, show, status
    /// changes, delete) need no server key and get a throwaway one, so that an operator can
    /// disable or revoke tokens without holding the pepper.
    fn manager(
        &self,
        store: std::sync::Arc<dyn TokenStore>,
        keyring: Option<Keyring>,
    ) -> Result<TokenManager, Failure> {
        let keyring =
            keyring.unwrap_or_else(|| Keyring::new(self.pepper_version, ServerKey::generate()));
        TokenManager::builder(store)
            .keyring(keyring)
            .prefix(self.prefix)
            .expiry_policy(self.policy)
            .audit_sink(audit::OperatorSink::from_env())
            .build()
            .map_err(Failure::from_error)
    }

    /// Checks the inputs, then connects: bad input fails before the database is touched.
    async fn open(&self, needs_pepper: bool) -> Result<TokenManager, Failure> {
        let location = self.location()?;
        let keyring = if needs_pepper {
            Some(self.keyring()?)
        } else {
            None
        };
        keygate::token::TokenFormat::new(self.prefix)
            .map_err(|e| Failure::usage(format!("--token-prefix: {e}")))?;
        let store = location.open().await?;
        match keyring {
            Some(keyring) => self.checked_manager(store, keyring).await,
            None => self.manager(store, None),
        }
    }

    /// A manager over `store` with the operator's `keyring`, checked against the store's
    /// key fingerprints: another pepper than the service's would issue tokens the service
    /// refuses, and call every token unknown.
    async fn checked_manager(
        &self,
        store: std::sync::Arc<dyn TokenStore>,
        keyring: Keyring,
    ) -> Result<TokenManager, Failure> {
        let manager = self.manager(store, Some(keyring))?;
        manager
            .check_server_keys()
            .await
            .map_err(Failure::from_error)?;
        Ok(manager)
    }
}

async fn token(ctx: &Context<'_>, cmd: TokenCommand) -> Result<u8, Failure> {
    match cmd {
        TokenCommand::Create(a) => create(ctx, a).await,
        TokenCommand::List(a) => list(ctx, a).await,
        TokenCommand::Expiring { within, json } => expiring(ctx, within, json).await,
        TokenCommand::Show { id, json } => show(ctx, &id, json).await,
        TokenCommand::Update(a) => update(ctx, a).await,
        TokenCommand::Rotate(a) => rotate(ctx, a).await,
        TokenCommand::Disable(a) => set_status(ctx, a, TokenStatus::Disabled).await,
        TokenCommand::Enable(a) => set_status(ctx, a, TokenStatus::Active).await,
        TokenCommand::Revoke(a) => set_status(ctx, a, TokenStatus::Revoked).await,
        TokenCommand::Delete(a) => delete(ctx, a).await,
        TokenCommand::Verify { json } => verify(ctx, json).await,
    }
}

async fn create(ctx: &Context<'_>, a: CreateArgs) -> Result<u8, Failure> {
    let scopes: ScopeSet = if a.admin {
        [Scope::admin()].into_iter().collect()
    } else {
        a.scopes.into_iter().collect()
    };
    let projects = if a.projects.is_empty() {
        Projects::All
    } else {
        Projects::Only(a.projects.into_iter().collect())
    };
    let mut req = IssueRequest::new(a.name, a.owner)
        .description(a.description)
        .created_by(CREATED_BY)
        .scopes(scopes)
        .projects(projects)
        .allowed_ips(a.allowed_ips)
        .expiry(a.expires);
    if let Some(id) = a.id {
        req = req.id(id);
    }
    if a.disabled {
        req = req.disabled();
    }
    let manager = ctx.open(true).await?;
    let issued = manager.issue(req).await.map_err(Failure::from_error)?;
    let id = issued.id().clone();
    let expires = issued
        .record()
        .expiry
        .at()
        .map_or_else(|| "never".to_owned(), output::instant);
    if let Err(failure) = output::line("the token", issued.expose_secret()) {
        // Nobody received the token: remove it rather than leave an unknown credential
        // (even the last `*` token: nobody holds it).
        drop(issued);
        let undo = match manager.allowing_no_admin().delete(&id).await {
            Ok(()) => format!("token `{id}` was deleted again"),
            Err(e) => format!(
                "deleting token `{id}` failed too ({}): revoke it",
                fail::chain(&e)
            ),
        };
        return Err(Failure::new(failure.code(), format!("{failure}; {undo}")));
    }
    let state = if issued.record().status == keygate::TokenStatus::Disabled {
        ", disabled until `keygate token enable`"
    } else {
        ""
    };
    eprintln!(
        "keygate: created token `{id}` (expires: {expires}{state}); it is shown once, store it now"
    );
    Ok(EXIT_OK)
}

async fn list(ctx: &Context<'_>, a: ListArgs) -> Result<u8, Failure> {
    let mut filter = TokenFilter::new();
    filter.name_contains = a.name;
    filter.owner = a.owner;
    filter.created_by = a.created_by;
    filter.status = a.status;
    filter.scope = a.scope;
    filter.project = a.project;
    filter.key_version = a.key_version;
    let manager = ctx.open(false).await?;
    let now = manager.now();
    let resolve = |p: keygate::ExpiryPreset| {
        p.resolve(now)
            .map(|e| e.at())
            .map_err(|e| Failure::usage(e.to_string()))
    };
    if let Some(p) = a.expires_before {
        filter.expires_before = resolve(p)?;
    }
    if let Some(p) = a.expires_after {
        filter.expires_after = resolve(p)?;
    }
    let limit = a
        .limit
        .map_or(usize::MAX, |n| usize::try_from(n).unwrap_or(usize::MAX));
    let mut records = Vec::new();
    let mut page = PageRequest::first(keygate::store::MAX_PAGE_LIMIT.min(limit));
    loop {
        let got = manager
            .list(&filter, &page)
            .await
            .map_err(Failure::from_error)?;
        records.extend(got.items);
        match got.next {
            Some(next) if records.len() < limit => page = page.next(next),
            _ => break,
        }
    }
    records.truncate(limit);
    print_records(&records, now, a.json)?;
    eprintln!("keygate: {} token(s)", records.len());
    Ok(EXIT_OK)
}

async fn pepper_usage(ctx: &Context<'_>) -> Result<u8, Failure> {
    let manager = ctx.open(false).await?;
    let counts = manager
        .tokens_per_key_version()
        .await
        .map_err(Failure::from_error)?;
    let text: String = counts
        .iter()
        .map(|(version, tokens)| format!("{version} {tokens}\n"))
        .collect();
    output::text("the usage", &text)?;
    eprintln!("keygate: {} server-key version(s) in use", counts.len());
    Ok(EXIT_OK)
}

async fn expiring(
    ctx: &Context<'_>,
    within: std::time::Duration,
    json: bool,
) -> Result<u8, Failure> {
    let manager = ctx.open(false).await?;
    let now = manager.now();
    let records = manager
        .expiring(within)
        .await
        .map_err(Failure::from_error)?;
    print_records(&records, now, json)?;
    eprintln!(
        "keygate: {} token(s) expire within the window",
        records.len()
    );
    Ok(EXIT_OK)
}

/// `records` on stdout: a table, or a JSON array of the records as `show --json` prints them.
fn print_records(
    records: &[keygate::TokenRecord],
    now: chrono::DateTime<chrono::Utc>,
    json: bool,
) -> Result<(), Failure> {
    if json {
        let items: Vec<_> = records
            .iter()
            .map(|r| output::record_json(r, now))
            .collect();
        output::text(
            "the list",
            &output::json_text(&serde_json::Value::Array(items)),
        )
    } else {
        output::text("the list", &output::table(records, now))
    }
}

async fn show(ctx: &Context<'_>, id: &TokenId, json: bool) -> Result<u8, Failure> {
    let manager = ctx.open(false).await?;
    let r = manager.get(id).await.map_err(Failure::from_error)?;
    let now = manager.now();
    if json {
        output::text(
            "the token",
            &output::json_text(&output::record_json(&r, now)),
        )?;
    } else {
        output::text("the token", &output::record_lines(&r, now))?;
    }
    Ok(EXIT_OK)
}

async fn rotate(ctx: &Context<'_>, a: RotateArgs) -> Result<u8, Failure> {
    let mut req = RotateRequest::new();
    if let Some(grace) = a.grace {
        req = req.grace(grace);
    }
    if let Some(expiry) = a.expires {
        req = req.expiry(expiry);
    }
    if a.end_grace {
        req = req.end_grace();
    }
    let manager = ctx.open(true).await?;
    let issued = manager
        .rotate(&a.id, req)
        .await
        .map_err(Failure::from_error)?;
    let until = issued
        .record()
        .retired
        .first()
        .map(|p| p.valid_until)
        .filter(|t| *t > manager.now());
    if let Err(failure) = output::line("the new token", issued.expose_secret()) {
        return Err(Failure::new(
            failure.code(),
            format!(
                "{failure}; token `{}` was rotated but its new secret is lost: rotate it again",
                a.id
            ),
        ));
    }
    match until {
        Some(t) => eprintln!(
            "keygate: rotated token `{}`; the old secret works until {}",
            a.id,
            output::instant(t)
        ),
        None => eprintln!(
            "keygate: rotated token `{}`; the old secret no longer works",
            a.id
        ),
    }
    Ok(EXIT_OK)
}

/// Checks every id before changing any: an unknown id, or a change the state of one of the
/// tokens does not allow, changes nothing.
async fn preflight(
    manager: &TokenManager,
    ids: &[TokenId],
    target: Option<TokenStatus>,
) -> Result<Vec<TokenRecord>, Failure> {
    let mut unique: Vec<TokenId> = Vec::with_capacity(ids.len());
    for id in ids {
        if !unique.contains(id) {
            unique.push(id.clone());
        }
    }
    let mut problems = Vec::new();
    let mut records = Vec::with_capacity(unique.len());
    for id in &unique {
        match manager.get(id).await {
            Ok(r) => {
                if let Some(target) = target {
                    if r.status == TokenStatus::Revoked && target != TokenStatus::Revoked {
                        problems.push(format!("token `{id}` is revoked; revocation is permanent"));
                    }
                }
                records.push(r);
            }
            Err(keygate::Error::NotFound(_)) => problems.push(format!("token `{id}` not found")),
            Err(e) => return Err(Failure::from_error(e)),
        }
    }
    if problems.is_empty() {
        Ok(records)
    } else {
        Err(Failure::usage(format!(
            "{}; nothing was changed",
            problems.join("; ")
        )))
    }
}

/// Is `r` a token that keeps the store manageable: active, unexpired, with `*`?
fn is_active_admin(r: &TokenRecord, now: chrono::DateTime<chrono::Utc>) -> bool {
    r.status == TokenStatus::Active && r.scopes.is_admin() && !r.expiry.is_expired_at(now)
}

/// Would retiring (disabling, revoking or deleting) every token of `targets` leave the store
/// without an active `*` token? Only if at least one of them is one, and no other exists.
async fn retires_last_admin(
    manager: &TokenManager,
    targets: &[TokenRecord],
) -> Result<bool, Failure> {
    let now = manager.now();
    if !targets.iter().any(|r| is_active_admin(r, now)) {
        return Ok(false);
    }
    let filter = TokenFilter::new()
        .scope(Scope::admin())
        .status(TokenStatus::Active)
        .expires_after(now);
    let mut page = PageRequest::first(keygate::store::MAX_PAGE_LIMIT);
    loop {
        let got = manager
            .list(&filter, &page)
            .await
            .map_err(Failure::from_error)?;
        if got
            .items
            .iter()
            .any(|r| is_active_admin(r, now) && !targets.iter().any(|t| t.id == r.id))
        {
            return Ok(false);
        }
        match got.next {
            Some(next) => page = page.next(next),
            None => return Ok(true),
        }
    }
}

/// The suffix of a question whose change would leave no active `*` token.
const NO_ADMIN: &str = ", leaving no active token with the `*` scope (no token could then \
                        manage tokens through the API)";

/// Asks for a destructive retirement of `targets` (`verb`: revoke, disable, delete) when it
/// needs asking, and returns the manager to make it with: one allowed to leave no active `*`
/// token only if that was what the operator confirmed.
async fn confirm_retirement(
    ctx: &Context<'_>,
    manager: &TokenManager,
    targets: &[TokenRecord],
    verb: &str,
    always: bool,
) -> Result<TokenManager, Failure> {
    let ids: Vec<&TokenId> = targets.iter().map(|r| &r.id).collect();
    let last_admin = retires_last_admin(manager, targets).await?;
    if always || last_admin {
        let question = format!(
            "{verb} {}{}",
            confirm::tokens(&ids),
            if last_admin { NO_ADMIN } else { "" }
        );
        ctx.confirm.ask(&question)?;
    }
    Ok(if last_admin {
        manager.allowing_no_admin()
    } else {
        manager.clone()
    })
}

async fn set_status(ctx: &Context<'_>, a: IdsArgs, status: TokenStatus) -> Result<u8, Failure> {
    let manager = ctx.open(false).await?;
    let records = preflight(&manager, &a.ids, Some(status)).await?;
    let (verb, done) = match status {
        TokenStatus::Active => ("enable", "enabled"),
        TokenStatus::Disabled => ("disable", "disabled"),
        TokenStatus::Revoked => ("revoke", "revoked"),
    };
    let manager = match status {
        TokenStatus::Active => manager,
        TokenStatus::Disabled => {
            confirm_retirement(ctx, &manager, &records, verb, records.len() > 1).await?
        }
        TokenStatus::Revoked => confirm_retirement(ctx, &manager, &records, verb, true).await?,
    };
    for r in &records {
        let id = &r.id;
        let before = manager.get(id).await.map_err(Failure::from_error)?.status;
        manager
            .set_status(id, status)
            .await
            .map_err(Failure::from_error)?;
        if before == status {
            eprintln!("keygate: token `{id}` was already {done}");
        } else {
            eprintln!("keygate: {done} token `{id}`");
        }
    }
    Ok(EXIT_OK)
}

async fn delete(ctx: &Context<'_>, a: IdsArgs) -> Result<u8, Failure> {
    let manager = ctx.open(false).await?;
    let records = preflight(&manager, &a.ids, None).await?;
    let manager = confirm_retirement(ctx, &manager, &records, "delete", true).await?;
    for r in &records {
        manager.delete(&r.id).await.map_err(Failure::from_error)?;
        eprintln!("keygate: deleted token `{}`", r.id);
    }
    Ok(EXIT_OK)
}

async fn update(ctx: &Context<'_>, a: UpdateArgs) -> Result<u8, Failure> {
    let mut change = TokenUpdate::new();
    if let Some(name) = a.name {
        change = change.name(name);
    }
    if let Some(description) = a.description {
        change = change.description(description);
    }
    if a.admin {
        change = change.scopes([Scope::admin()].into_iter().collect());
    } else if a.no_scopes {
        change = change.scopes(ScopeSet::new());
    } else if !a.scopes.is_empty() {
        change = change.scopes(a.scopes.into_iter().collect());
    }
    if a.all_projects {
        change = change.projects(Projects::All);
    } else if !a.projects.is_empty() {
        change = change.projects(Projects::Only(a.projects.into_iter().collect()));
    }
    if a.any_ip {
        change = change.allowed_ips([]);
    } else if !a.allowed_ips.is_empty() {
        change = change.allowed_ips(a.allowed_ips);
    }
    if let Some(expiry) = a.expires {
        change = change.expiry(expiry);
    }
    // Inputs first (the acting token included), then the database.
    let actor_token = if a.as_token {
        ctx.location()?;
        ctx.keyring()?;
        Some(read_token_line()?)
    } else {
        None
    };
    let manager = ctx.open(a.as_token).await?;
    let actor = match &actor_token {
        Some(token) => Some(acting_token(&manager, token).await?),
        None => None,
    };
    drop(actor_token);
    let before = match &actor {
        Some(actor) => manager.acting_as(actor).get(&a.id).await,
        None => manager.get(&a.id).await,
    }
    .map_err(Failure::from_error)?;
    let apply = |manager: TokenManager, change: TokenUpdate| {
        let id = a.id.clone();
        let actor = actor.clone();
        async move {
            match &actor {
                Some(actor) => manager.acting_as(actor).update(&id, change).await,
                None => manager.update(&id, change).await,
            }
        }
    };
    let after = match apply(manager.clone(), change.clone()).await {
        Err(keygate::Error::LastAdmin(_)) => {
            ctx.confirm
                .ask(&format!("update token `{}`{NO_ADMIN}", a.id))?;
            apply(manager.allowing_no_admin(), change).await
        }
        other => other,
    }
    .map_err(Failure::from_error)?;
    let now = manager.now();
    let diff = output::diff(&before, &after);
    if diff.is_empty() {
        eprintln!(
            "keygate: token `{}` is unchanged (it already had these settings)",
            a.id
        );
    } else {
        eprint!("keygate: updated token `{}`:\n{diff}", a.id);
    }
    if a.json {
        output::text(
            "the token",
            &output::json_text(&output::record_json(&after, now)),
        )?;
    }
    Ok(EXIT_OK)
}

/// The token `token update --as-token` acts as: valid, and holding `tokens:write` (what the
/// admin API's `PATCH` needs), else a usage failure with nothing changed.
async fn acting_token(manager: &TokenManager, token: &str) -> Result<VerifiedToken, Failure> {
    let verified = match manager.verify(token).await {
        Ok(v) => v,
        Err(VerifyError::Store(e)) => return Err(Failure::store(e)),
        Err(e) => {
            return Err(Failure::usage(format!(
                "the acting token is not valid: {e} ({}); nothing was changed",
                e.code()
            )));
        }
    };
    let write =
        Scope::new("tokens:write").map_err(|e| Failure::usage(format!("tokens:write: {e}")))?;
    manager.authorize(&verified, &write).map_err(|e| {
        Failure::usage(format!(
            "the acting token may not change tokens: {e}; nothing was changed"
        ))
    })?;
    Ok(verified)
}

/// Reads one line from stdin, at most [`MAX_TOKEN_LINE`] bytes, without its line ending
/// and surrounding whitespace.
fn read_token_line() -> Result<Zeroizing<String>, Failure> {
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        eprint!("keygate: paste the token and press enter: ");
    }
    let mut bytes = Zeroizing::new(Vec::new());
    stdin
        .lock()
        .take(MAX_TOKEN_LINE + 1)
        .read_until(b'\n', &mut bytes)
        .map_err(|e| Failure::usage(format!("cannot read the token from stdin: {e}")))?;
    if bytes.len() as u64 > MAX_TOKEN_LINE {
        return Err(Failure::new(
            EXIT_INVALID,
            "token not valid: malformed (the line on stdin is too long to be a token)",
        ));
    }
    let text = std::str::from_utf8(&bytes)
        .map_err(|_| Failure::new(EXIT_INVALID, "token not valid: malformed (not UTF-8)"))?;
    let token = Zeroizing::new(text.trim().to_owned());
    if token.is_empty() {
        return Err(Failure::usage(
            "no token on stdin: `keygate token verify` reads one line from stdin",
        ));
    }
    Ok(token)
}

async fn verify(ctx: &Context<'_>, json: bool) -> Result<u8, Failure> {
    // Inputs first, then the token, then the database.
    let location = ctx.location()?;
    let keyring = ctx.keyring()?;
    keygate::token::TokenFormat::new(ctx.prefix)
        .map_err(|e| Failure::usage(format!("--token-prefix: {e}")))?;
    let token = read_token_line()?;
    let manager = ctx.checked_manager(location.open().await?, keyring).await?;
    let verified = match manager.verify(&token).await {
        Ok(v) => v,
        Err(VerifyError::Store(e)) => return Err(Failure::store(e)),
        Err(e) => {
            return Err(Failure::new(
                EXIT_INVALID,
                format!("token not valid: {e} ({})", e.code()),
            ));
        }
    };
    drop(token);
    let now = chrono::SubsecRound::trunc_subsecs(manager.now(), 6);
    // A verification is a use: record it now rather than leave it to a background write
    // the process may not wait for.
    manager
        .store()
        .touch(verified.id(), now)
        .await
        .map_err(Failure::store)?;
    let mut r = verified.record().clone();
    r.last_used_at = r.last_used_at.max(Some(now));
    let r = &r;
    if json {
        let mut v = output::record_json(r, now);
        if let Some(obj) = v.as_object_mut() {
            obj.insert("valid".into(), true.into());
            obj.insert(
                "used_previous_secret".into(),
                verified.used_previous_secret().into(),
            );
        }
        output::text("the result", &output::json_text(&v))?;
    } else {
        let mut text = String::from("valid: yes\n");
        if verified.used_previous_secret() {
            text.push_str("secret: previous (inside its rotation grace period)\n");
        }
        text.push_str(&output::record_lines(r, now));
        output::text("the result", &text)?;
    }
    eprintln!("keygate: token `{}` is valid", verified.id());
    Ok(EXIT_OK)
}
