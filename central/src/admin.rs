//! The admin channel: the `central` CLI talks to the running service over a
//! Unix socket (`[admin] listen`, default `DATA_DIR/admin.sock`). The
//! socket is made mode 0600 inside the 0700 data directory, so only the
//! service's user (and root) can use it; there is no other
//! authentication. One request per connection: a JSON line in, a JSON
//! line out.

use std::path::Path;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use sync_protocol::message::{Refusal, RefusalCode};
use sync_protocol::pki::EnrollmentToken;
use sync_protocol::policy::credentials::Secret;
use sync_protocol::policy::users::{NewUser, policy_user};
use sync_protocol::rules::Rules;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::watch;

use crate::policy_files::{RULES_FILE, USERS_FILE};
use crate::store::{CentralStore, PolicyEdit, ReportBy, StoreError};
use crate::sync::Shared;

/// Largest request line (a user import of some hundred thousand users).
pub const MAX_REQUEST: usize = 256 << 20;

/// A request from the CLI.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "snake_case")]
pub enum AdminRequest {
    /// Register a site and issue its enrollment token.
    SiteAdd {
        /// Its name.
        name: String,
    },
    /// Every site.
    SiteList,
    /// Revoke a site and end its sessions.
    SiteRevoke {
        /// Its name.
        name: String,
    },
    /// Add users (all or none).
    UserAdd {
        /// The users, with their secrets as typed.
        users: Vec<UserInput>,
    },
    /// Disable or enable a user.
    UserSetDisabled {
        /// Who.
        id: String,
        /// Disable (true) or enable.
        disabled: bool,
    },
    /// Replace the rules.
    RulesSet {
        /// The new rules.
        rules: Rules,
    },
    /// Accounting totals.
    Report {
        /// Grouping.
        by: ReportBy,
        /// From this time on (ms since the epoch).
        since_ms: i64,
    },
    /// The global job index for one user.
    Jobs {
        /// Whose.
        user: String,
    },
    /// Policy version, the sites connected to this node, the storage, and
    /// every node sharing it with the sites on each.
    Status,
}

/// A user as the CLI sends it: secrets in clear over the local socket,
/// hashed by the service under the fleet key.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct UserInput {
    /// Login name.
    pub id: String,
    /// Name shown at the printer.
    pub display_name: String,
    /// E-mail.
    pub email: Option<String>,
    /// Groups.
    pub groups: Vec<String>,
    /// PIN.
    pub pin: Option<String>,
    /// Card numbers.
    pub cards: Vec<String>,
    /// Password.
    pub password: Option<String>,
}

impl From<NewUser> for UserInput {
    fn from(u: NewUser) -> Self {
        UserInput {
            id: u.id,
            display_name: u.display_name,
            email: u.email,
            groups: u.groups,
            pin: u.pin.map(|s| s.expose().to_owned()),
            cards: u.cards.iter().map(|s| s.expose().to_owned()).collect(),
            password: u.password.map(|s| s.expose().to_owned()),
        }
    }
}

impl From<UserInput> for NewUser {
    fn from(u: UserInput) -> Self {
        NewUser {
            id: u.id,
            display_name: u.display_name,
            email: u.email,
            groups: u.groups,
            pin: u.pin.map(Secret::new),
            cards: u.cards.into_iter().map(Secret::new).collect(),
            password: u.password.map(Secret::new),
        }
    }
}

/// The answer to a request.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AdminReply {
    /// Done; what it returns.
    Ok(serde_json::Value),
    /// Refused: a usage problem (`invalid`, `conflict`, `not_found`) or a
    /// failure of the service (`unavailable`).
    Error {
        /// Kind.
        code: String,
        /// What happened and what to do.
        message: String,
    },
}

fn error(code: &str, message: impl Into<String>) -> AdminReply {
    AdminReply::Error {
        code: code.into(),
        message: message.into(),
    }
}

impl From<StoreError> for AdminReply {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Conflict(m) => error("conflict", m),
            StoreError::NotFound(m) => error("not_found", m),
            StoreError::Invalid(m) => error("invalid", m),
            other => error("unavailable", other.to_string()),
        }
    }
}

/// Binds the admin socket (0600) at `path`, replacing a stale one.
pub fn bind(path: &Path) -> std::io::Result<UnixListener> {
    use std::os::unix::fs::PermissionsExt;
    if path.exists() {
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::AddrInUse,
                format!("{} is in use: is central running already?", path.display()),
            ));
        }
        std::fs::remove_file(path)?;
    }
    let listener = UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(listener)
}

/// Serves admin requests until `shutdown` turns true.
pub async fn serve<S: CentralStore>(
    listener: UnixListener,
    shared: Arc<Shared<S>>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = crate::service::stopped(&mut shutdown) => break,
        };
        let Ok((stream, _)) = accepted else { continue };
        let shared = shared.clone();
        tokio::spawn(async move {
            if let Err(e) = answer(stream, &shared).await {
                tracing::warn!(error = %e, "admin: request failed");
            }
        });
    }
}

async fn answer<S: CentralStore>(stream: UnixStream, shared: &Shared<S>) -> std::io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut line = Vec::new();
    let mut reader = BufReader::new(read).take(MAX_REQUEST as u64 + 1);
    reader.read_until(b'\n', &mut line).await?;
    let reply = if line.len() > MAX_REQUEST {
        error("invalid", "request too large")
    } else {
        match serde_json::from_slice::<AdminRequest>(&line) {
            Ok(request) => handle(shared, request).await,
            Err(e) => error("invalid", format!("not a request: {e}")),
        }
    };
    let mut out = serde_json::to_vec(&reply).unwrap_or_else(|_| b"{}".to_vec());
    out.push(b'\n');
    write.write_all(&out).await?;
    write.shutdown().await
}

fn to_value(value: impl Serialize) -> AdminReply {
    match serde_json::to_value(value) {
        Ok(v) => AdminReply::Ok(v),
        Err(e) => error("unavailable", e.to_string()),
    }
}

/// A site name: what sites are called in logs, reports and certificates.
fn check_site_name(name: &str) -> Result<(), String> {
    let ok = (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "site name {name:?} must be 1 to 64 letters, digits, '.', '_' or '-'"
        ))
    }
}

async fn handle<S: CentralStore>(shared: &Shared<S>, request: AdminRequest) -> AdminReply {
    // What a file in the policy directory owns, the CLI may not edit.
    let owned_by_file = |file: &str, what: &str| {
        shared
            .config
            .policy
            .dir
            .as_ref()
            .map(|dir| dir.join(file))
            .filter(|path| path.exists())
            .map(|path| {
                error(
                    "invalid",
                    format!(
                        "{what} managed in {}; edit that file instead",
                        path.display()
                    ),
                )
            })
    };
    match request {
        AdminRequest::SiteAdd { name } => match add_site(shared, &name).await {
            Ok((token, expires_ms)) => {
                tracing::info!(site = %name, "site added; enrollment token issued");
                to_value(serde_json::json!({
                    "site": name,
                    "expires_ms": expires_ms,
                    "token": token.to_string(),
                }))
            }
            Err(SiteAddError::Invalid(e)) => error("invalid", e),
            Err(SiteAddError::Unavailable(e)) => error("unavailable", e),
            Err(SiteAddError::Store(e)) => e.into(),
        },
        AdminRequest::SiteList => match shared.store.list_sites().await {
            Ok(sites) => {
                // Connected to this node or to another live one.
                let mut connected = shared.registry.connected();
                if let Ok(nodes) = shared.store.nodes().await {
                    connected.extend(nodes.into_iter().filter(|n| n.alive).flat_map(|n| n.sites));
                }
                let sites: Vec<_> = sites
                    .into_iter()
                    .map(|s| {
                        let online = connected.contains(&s.name);
                        serde_json::json!({ "site": s, "connected": online })
                    })
                    .collect();
                to_value(sites)
            }
            Err(e) => e.into(),
        },
        AdminRequest::SiteRevoke { name } => match shared.store.revoke_site(name.clone()).await {
            Ok(()) => {
                let ended = shared.registry.end_site(
                    &name,
                    &Refusal::new(
                        RefusalCode::Revoked,
                        format!("site {name} was revoked at central"),
                    ),
                );
                tracing::warn!(site = %name, sessions_ended = ended, "site revoked");
                to_value(serde_json::json!({ "site": name, "sessions_ended": ended }))
            }
            Err(e) => e.into(),
        },
        AdminRequest::UserAdd { users } => {
            if let Some(refused) = owned_by_file(USERS_FILE, "users are") {
                return refused;
            }
            let key = shared.identity.lookup_key();
            let pin_only = shared.config.policy.pin_only_login;
            // argon2 for passwords takes tens of milliseconds each.
            let prepared = tokio::task::spawn_blocking(move || {
                users
                    .into_iter()
                    .map(|u| {
                        policy_user(&NewUser::from(u), &key, pin_only).map_err(|e| e.to_string())
                    })
                    .collect::<Result<Vec<_>, _>>()
            })
            .await;
            let users = match prepared {
                Ok(Ok(users)) => users,
                Ok(Err(e)) => return error("invalid", format!("{e}; nobody was added")),
                Err(e) => return error("unavailable", e.to_string()),
            };
            let count = users.len();
            edit(
                shared,
                PolicyEdit::AddUsers(users),
                serde_json::json!({ "added": count }),
            )
            .await
        }
        AdminRequest::UserSetDisabled { id, disabled } => {
            if let Some(refused) = owned_by_file(USERS_FILE, "users are") {
                return refused;
            }
            let ids = vec![id.clone()];
            edit(
                shared,
                PolicyEdit::SetDisabled { ids, disabled },
                serde_json::json!({ "user": id, "disabled": disabled }),
            )
            .await
        }
        AdminRequest::RulesSet { rules } => {
            if let Some(refused) = owned_by_file(RULES_FILE, "the rules are") {
                return refused;
            }
            if let Some(key) = rules.unknown_keys().first() {
                return error("invalid", format!("{key} is not a rule"));
            }
            edit(shared, PolicyEdit::SetRules(rules), serde_json::json!({})).await
        }
        AdminRequest::Report { by, since_ms } => match shared.store.report(by, since_ms).await {
            Ok(rows) => to_value(rows),
            Err(e) => e.into(),
        },
        AdminRequest::Jobs { user } => match shared.store.jobs_of(user).await {
            Ok(jobs) => to_value(jobs),
            Err(e) => e.into(),
        },
        AdminRequest::Status => match (
            shared.store.policy_version().await,
            shared.store.nodes().await,
        ) {
            (Ok(version), Ok(nodes)) => to_value(serde_json::json!({
                "policy_version": version,
                "node": shared.nodes.address,
                "connected": shared.registry.connected(),
                "storage": shared.store.describe().await,
                "nodes": nodes,
            })),
            (Err(e), _) | (_, Err(e)) => e.into(),
        },
    }
}

/// Applies a policy edit and tells every session; `done` plus the new
/// version is the answer.
pub(crate) async fn edit<S: CentralStore>(
    shared: &Shared<S>,
    edit: PolicyEdit,
    mut done: serde_json::Value,
) -> AdminReply {
    match shared.store.edit_policy(edit).await {
        Ok(version) => {
            crate::store::raise_policy(&shared.policy, version);
            if let Some(object) = done.as_object_mut() {
                object.insert("policy_version".into(), version.into());
            }
            AdminReply::Ok(done)
        }
        Err(e) => e.into(),
    }
}

/// Why a site could not be added.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SiteAddError {
    /// The name is unusable.
    #[error("{0}")]
    Invalid(String),
    /// No randomness for the token.
    #[error("{0}")]
    Unavailable(String),
    /// Storage refused (a site of that name exists) or failed.
    #[error("{0}")]
    Store(#[from] StoreError),
}

/// Registers site `name` and issues its enrollment token; returns the
/// token and when it expires (ms since the Unix epoch).
pub(crate) async fn add_site<S: CentralStore>(
    shared: &Shared<S>,
    name: &str,
) -> Result<(EnrollmentToken, i64), SiteAddError> {
    let token = new_token(shared).map_err(SiteAddError::Unavailable)?;
    let expires_ms = register_site(shared, name, &token).await?;
    Ok((token, expires_ms))
}

/// Registers site `name` to be enrolled with `token`; returns when the
/// token expires.
pub(crate) async fn register_site<S: CentralStore>(
    shared: &Shared<S>,
    name: &str,
    token: &EnrollmentToken,
) -> Result<i64, SiteAddError> {
    check_site_name(name).map_err(SiteAddError::Invalid)?;
    let ttl = shared.config.sites.token_ttl_secs;
    let expires_ms = jiff::Timestamp::now()
        .as_millisecond()
        .saturating_add(i64::try_from(ttl.saturating_mul(1000)).unwrap_or(i64::MAX));
    shared
        .store
        .add_site(
            name.to_owned(),
            token.id.clone(),
            token.secret_hash(),
            expires_ms,
        )
        .await?;
    Ok(expires_ms)
}

/// A fresh enrollment token pinning this central's CA.
pub(crate) fn new_token<S>(shared: &Shared<S>) -> Result<EnrollmentToken, String> {
    let mut id = [0u8; 8];
    let mut secret = [0u8; 16];
    getrandom::fill(&mut id).map_err(|e| e.to_string())?;
    getrandom::fill(&mut secret).map_err(|e| e.to_string())?;
    Ok(EnrollmentToken {
        id: hex::encode(id),
        secret: hex::encode(secret),
        ca_fingerprint: shared
            .identity
            .authority
            .fingerprint()
            .map_err(|e| e.to_string())?,
    })
}

/// Sends `request` to the service listening at `socket`.
pub async fn request(socket: &Path, request: &AdminRequest) -> std::io::Result<AdminReply> {
    let stream = UnixStream::connect(socket).await.map_err(|e| {
        std::io::Error::new(
            e.kind(),
            format!(
                "cannot reach central at {}: {e} (is `central serve` running, and are you its \
                 user?)",
                socket.display()
            ),
        )
    })?;
    let (read, mut write) = stream.into_split();
    let mut line = serde_json::to_vec(request).map_err(std::io::Error::other)?;
    line.push(b'\n');
    write.write_all(&line).await?;
    write.shutdown().await?;
    let mut reply = Vec::new();
    BufReader::new(read).read_until(b'\n', &mut reply).await?;
    serde_json::from_slice(&reply).map_err(|e| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("central answered something unreadable: {e}"),
        )
    })
}
