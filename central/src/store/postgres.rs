//! The PostgreSQL backend: one database that several central nodes share,
//! so any node serves any site and a node keeps nothing another needs.
//!
//! What must be decided once is decided by the database, with row locks in
//! READ COMMITTED transactions rather than SERIALIZABLE ones: every
//! contended decision here is "read one row, then write what follows from
//! it", so locking that row (`SELECT … FOR UPDATE`) serialises exactly the
//! transactions that conflict and never makes one fail and retry:
//! - a log's acknowledged mark (site, epoch) is locked while a batch is
//!   stored, so two nodes storing one site's batches at once cannot move it
//!   backwards; the records' (site, epoch, seq) key makes a resend a no-op;
//! - the policy version row is locked by every edit, so versions are
//!   gapless and commit in version order (a site that asks for "changes
//!   since 6" never misses a version-6 edit committed after a version-7
//!   one, which a sequence would allow);
//! - an enrollment token's row is locked while it is used, so it enrolls
//!   one site once even when two nodes see it at the same moment.
//!
//! Each effective policy edit is announced with NOTIFY in its transaction,
//! so every node (its `follow_policy` listener) learns the new version at
//! commit and pushes it to the sites it serves; a listener that reconnects
//! reads the current version first, so an edit made meanwhile is not
//! missed.
//!
//! Which node holds each site's session (`nodes`) is judged by the
//! database's clock, never a node's, so nodes whose clocks disagree still
//! agree on who is alive.
//!
//! Group commit is PostgreSQL's own (concurrent commits share WAL
//! flushes); what the backend adds is one statement per batch: a site's
//! journal or job batch goes in as arrays (`unnest`), one round trip for
//! the whole batch.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime, Transaction};
use futures_util::StreamExt;
use sync_protocol::message::{JobAnnouncement, JobBatch, JournalBatch, PolicyChanges, PolicyUser};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{mpsc, watch};
use tokio_postgres::config::SslMode;
use tokio_postgres::error::SqlState;
use tokio_postgres::{AsyncMessage, IsolationLevel, NoTls, Row};

use super::nodes::{self, ALIVE_MS, FORGET_MS, NodeInfo};
use super::policy::{self, EditNeeds};
use super::postgres_tls::MakeRustlsConnect;
use super::schema::{self, Dialect};
use super::sites::{EnrollRefusal, SiteInfo, StoredToken, split_unknown_rules};
use super::{
    CHUNK_USERS, CentralStore, IndexedJob, PolicyDelta, PolicyEdit, ReportBy, ReportRow,
    SnapshotHead, SnapshotPart, StoreError, now_ms, raise_policy,
};

/// How long an operation waits for a pooled connection, or for a new one.
const CONNECTION_WAIT: Duration = Duration::from_secs(10);

/// The NOTIFY channel that carries each new policy version to every node.
const POLICY_CHANNEL: &str = "central_policy";

/// The database's clock in milliseconds since the epoch (`clock_timestamp`,
/// not the transaction's start).
const DB_NOW_MS: &str = "(extract(epoch FROM clock_timestamp()) * 1000)::bigint";

/// How long the policy listener waits before connecting again.
const LISTEN_RETRY: Duration = Duration::from_secs(1);

/// Serialises schema migrations between nodes that start at once
/// (`pg_advisory_xact_lock`; the number is arbitrary but fixed).
const MIGRATION_LOCK: i64 = 0x6365_6e74_7261_6c31;

/// Central's storage in a PostgreSQL database.
#[derive(Clone)]
pub struct PostgresStore {
    pool: Pool,
    /// For the connection that listens for other nodes' policy edits.
    config: Arc<tokio_postgres::Config>,
    /// TLS for every connection, when `[storage] tls_ca` is given.
    tls: Option<MakeRustlsConnect>,
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStore")
            .field("status", &self.pool.status())
            .finish()
    }
}

fn unavailable(e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

/// A database error as a store error, with what caused it (a refused
/// certificate, a refused connection).
fn db(e: tokio_postgres::Error) -> StoreError {
    if let Some(db) = e.as_db_error() {
        return StoreError::Unavailable(format!("PostgreSQL: {}", db.message()));
    }
    let mut message = format!("PostgreSQL: {e}");
    let mut source = std::error::Error::source(&e);
    while let Some(cause) = source {
        message.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    StoreError::Unavailable(message)
}

fn int(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

fn count(value: i64) -> u64 {
    value.max(0) as u64
}

impl PostgresStore {
    /// Connects to the database at `url` (a `postgres://` URL or a
    /// key=value string) with up to `pool_size` connections, over TLS
    /// verified against the CA certificates in `tls_ca` when given (and
    /// never in the clear then), and brings its schema to the current
    /// version.
    pub async fn connect(
        url: &str,
        pool_size: usize,
        tls_ca: Option<&Path>,
    ) -> Result<PostgresStore, StoreError> {
        let mut config: tokio_postgres::Config = url
            .parse()
            .map_err(|e| StoreError::Invalid(format!("[storage] url: {e}")))?;
        let tls = tls_ca.map(MakeRustlsConnect::from_ca_file).transpose()?;
        match (&tls, config.get_ssl_mode()) {
            (Some(_), _) => config.ssl_mode(SslMode::Require),
            (None, SslMode::Require) => {
                return Err(StoreError::Invalid(
                    "[storage] url asks for sslmode=require: give [storage] tls_ca, the CA \
                     certificate(s) the PostgreSQL server's certificate chains to"
                        .into(),
                ));
            }
            (None, _) => config.ssl_mode(SslMode::Disable),
        };
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECTION_WAIT);
        }
        if config.get_application_name().is_none() {
            config.application_name("central");
        }
        let recycling = ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        };
        let manager = match &tls {
            Some(tls) => Manager::from_config(config.clone(), tls.clone(), recycling),
            None => Manager::from_config(config.clone(), NoTls, recycling),
        };
        let pool = Pool::builder(manager)
            .max_size(pool_size)
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(CONNECTION_WAIT))
            .create_timeout(Some(CONNECTION_WAIT))
            .build()
            .map_err(unavailable)?;
        let store = PostgresStore {
            pool,
            config: Arc::new(config),
            tls,
        };
        store.migrate().await?;
        Ok(store)
    }

    async fn client(&self) -> Result<deadpool_postgres::Client, StoreError> {
        self.pool.get().await.map_err(|e| match e {
            deadpool_postgres::PoolError::Backend(e) => db(e),
            other => StoreError::Unavailable(format!("PostgreSQL: {other}")),
        })
    }

    /// Applies the schema steps this database lacks, one transaction each,
    /// under a lock so that nodes starting together apply each once.
    async fn migrate(&self) -> Result<(), StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(db)?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
            .await
            .map_err(db)?;
        tx.batch_execute(
            "CREATE TABLE IF NOT EXISTS schema_version (applied BIGINT NOT NULL); \
             INSERT INTO schema_version (applied) \
             SELECT 0 WHERE NOT EXISTS (SELECT 1 FROM schema_version);",
        )
        .await
        .map_err(db)?;
        let applied: i64 = tx
            .query_one("SELECT applied FROM schema_version", &[])
            .await
            .map_err(db)?
            .get(0);
        let steps = schema::steps(Dialect::Postgres);
        if count(applied) as usize > steps.len() {
            return Err(StoreError::Unavailable(format!(
                "the database's schema is at step {applied}, newer than this central \
                 ({}); run the newer central, or point [storage] url at another database",
                steps.len()
            )));
        }
        for (n, step) in steps.iter().enumerate().skip(count(applied) as usize) {
            tx.batch_execute(step).await.map_err(|e| {
                StoreError::Unavailable(format!("database migration {} failed: {e}", n + 1))
            })?;
        }
        tx.execute(
            "UPDATE schema_version SET applied = $1",
            &[&(steps.len() as i64)],
        )
        .await
        .map_err(db)?;
        tx.commit().await.map_err(db)
    }

    /// Listens for new policy versions on a connection of its own until it
    /// breaks; every version heard, and the current one once listening
    /// (what was committed while no one listened), raises `policy`. `Ok`
    /// when it listened and the connection then ended; `down` is cleared
    /// once it listens.
    async fn listen_policy(
        &self,
        policy: &watch::Sender<u64>,
        down: &mut bool,
    ) -> Result<(), StoreError> {
        let (client, mut versions, driver) = match &self.tls {
            Some(tls) => {
                let (client, connection) = self.config.connect(tls.clone()).await.map_err(db)?;
                let (versions, driver) = notifications(connection);
                (client, versions, driver)
            }
            None => {
                let (client, connection) = self.config.connect(NoTls).await.map_err(db)?;
                let (versions, driver) = notifications(connection);
                (client, versions, driver)
            }
        };
        let listening = async {
            client
                .batch_execute(&format!("LISTEN {POLICY_CHANNEL}"))
                .await
                .map_err(db)?;
            let row = client
                .query_one("SELECT value FROM policy WHERE key = 'version'", &[])
                .await
                .map_err(db)?;
            raise_policy(policy, policy::parse_number("version", row.get(0))?);
            Ok::<_, StoreError>(())
        }
        .await;
        if let Err(e) = listening {
            driver.abort();
            return Err(e);
        }
        if std::mem::take(down) {
            tracing::info!("hearing other nodes' policy edits again");
        }
        while let Some(payload) = versions.recv().await {
            match payload.parse() {
                Ok(version) => {
                    if raise_policy(policy, version) {
                        tracing::info!(version, "policy changed through another node");
                    }
                }
                Err(_) => tracing::warn!(%payload, "policy notification is not a version"),
            }
        }
        Ok(())
    }

    /// The database server's version.
    async fn server_version(&self) -> Result<String, StoreError> {
        let client = self.client().await?;
        let row = client
            .query_one("SHOW server_version", &[])
            .await
            .map_err(db)?;
        Ok(row.get(0))
    }
}

/// Polls `connection` (a client works only while its connection is
/// polled) in a task of its own, sending the payload of every notification
/// it carries; the channel ends with the connection.
fn notifications<S, T>(
    mut connection: tokio_postgres::Connection<S, T>,
) -> (mpsc::UnboundedReceiver<String>, tokio::task::JoinHandle<()>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (heard, versions) = mpsc::unbounded_channel();
    let driver = tokio::spawn(async move {
        let mut messages = std::pin::pin!(futures_util::stream::poll_fn(move |cx| {
            connection.poll_message(cx)
        }));
        while let Some(Ok(message)) = messages.next().await {
            if let AsyncMessage::Notification(note) = message
                && heard.send(note.payload().to_owned()).is_err()
            {
                break;
            }
        }
    });
    (versions, driver)
}

/// Runs `$body` (an expression using `$tx`) in a transaction on a pooled
/// connection, committing when it succeeds; an error rolls back.
macro_rules! in_transaction {
    ($store:expr, |$tx:ident| $body:expr) => {{
        let mut client = $store.client().await?;
        let $tx = client.transaction().await.map_err(db)?;
        let value = $body;
        $tx.commit().await.map_err(db)?;
        Ok(value)
    }};
}

/// Like [`in_transaction!`], in one REPEATABLE READ READ ONLY snapshot.
macro_rules! in_snapshot {
    ($store:expr, |$tx:ident| $body:expr) => {{
        let mut client = $store.client().await?;
        let $tx = client
            .build_transaction()
            .isolation_level(IsolationLevel::RepeatableRead)
            .read_only(true)
            .start()
            .await
            .map_err(db)?;
        let value = $body;
        $tx.commit().await.map_err(db)?;
        Ok(value)
    }};
}

const SITE_COLUMNS: &str = "name, created_ms, enrolled_ms, revoked_ms, last_contact_ms, \
                            policy_version, unknown_rules";

fn site_from_row(row: &Row) -> SiteInfo {
    SiteInfo {
        name: row.get(0),
        created_ms: row.get(1),
        enrolled_ms: row.get(2),
        revoked_ms: row.get(3),
        last_contact_ms: row.get(4),
        policy_version: count(row.get(5)),
        unknown_rules: split_unknown_rules(row.get(6)),
    }
}

async fn check_token(
    tx: &Transaction<'_>,
    token_id: &str,
    secret_sha256: &[u8; 32],
    now_ms: i64,
    lock: bool,
) -> Result<Result<String, EnrollRefusal>, StoreError> {
    let sql = format!(
        "SELECT t.site, t.secret_sha256, t.expires_ms, t.used_ms, s.revoked_ms \
         FROM enrollment_tokens t JOIN sites s ON s.name = t.site WHERE t.id = $1{}",
        if lock { " FOR UPDATE OF t" } else { "" }
    );
    let Some(row) = tx.query_opt(&sql, &[&token_id]).await.map_err(db)? else {
        return Ok(Err(EnrollRefusal::BadToken));
    };
    let stored = StoredToken {
        secret_sha256: row.get(1),
        expires_ms: row.get(2),
        used: row.get::<_, Option<i64>>(3).is_some(),
        revoked: row.get::<_, Option<i64>>(4).is_some(),
    };
    Ok(stored.judge(secret_sha256, now_ms).map(|()| row.get(0)))
}

/// The acknowledged (journal, jobs) marks of (site, epoch), created at 0;
/// `lock` holds the row until the transaction ends.
async fn marks(
    tx: &Transaction<'_>,
    site: &str,
    epoch: &str,
    lock: bool,
) -> Result<(u64, u64), StoreError> {
    tx.execute(
        "INSERT INTO log_marks (site, epoch) VALUES ($1, $2) ON CONFLICT DO NOTHING",
        &[&site, &epoch],
    )
    .await
    .map_err(db)?;
    let sql = format!(
        "SELECT journal_acked, jobs_acked FROM log_marks WHERE site = $1 AND epoch = $2{}",
        if lock { " FOR UPDATE" } else { "" }
    );
    let row = tx.query_one(&sql, &[&site, &epoch]).await.map_err(db)?;
    Ok((count(row.get(0)), count(row.get(1))))
}

/// The batches' common check: nothing may be missing before a batch.
fn continues(what: &str, after: u64, acked: u64) -> Result<(), StoreError> {
    if after > acked {
        return Err(super::logs::gap(what, after, acked));
    }
    Ok(())
}

async fn store_journal(
    tx: &Transaction<'_>,
    site: &str,
    batch: &JournalBatch,
) -> Result<u64, StoreError> {
    let (acked, _) = marks(tx, site, &batch.epoch, true).await?;
    continues("journal", batch.after, acked)?;
    let new: Vec<_> = batch.records.iter().filter(|r| r.seq > acked).collect();
    if !new.is_empty() {
        let column = |f: fn(&sync_protocol::message::JournalRecord) -> i64| {
            new.iter().map(|r| f(r)).collect::<Vec<i64>>()
        };
        let text = |f: fn(&sync_protocol::message::JournalRecord) -> &str| {
            new.iter().map(|r| f(r)).collect::<Vec<&str>>()
        };
        let seqs = column(|r| int(r.seq));
        let job_ids = column(|r| i64::from(r.job_id));
        let exact = column(|r| i64::from(r.pages_exact));
        let copies = column(|r| i64::from(r.copies));
        let times = column(|r| r.time_ms);
        let pages: Vec<Option<i64>> = new.iter().map(|r| r.pages.map(i64::from)).collect();
        let sheets: Vec<Option<i64>> = new.iter().map(|r| r.sheets.map(i64::from)).collect();
        let media: Vec<Option<&str>> = new.iter().map(|r| r.media.as_deref()).collect();
        let origins: Vec<Option<&str>> = new.iter().map(|r| r.origin_site.as_deref()).collect();
        let (jobs, queues, users, devices) = (
            text(|r| &r.job),
            text(|r| &r.queue),
            text(|r| &r.user),
            text(|r| &r.device),
        );
        let (colors, sides, outcomes) =
            (text(|r| &r.color), text(|r| &r.sides), text(|r| &r.outcome));
        let insert = tx
            .prepare_cached(
                "INSERT INTO journal (site, epoch, seq, job_uuid, queue, job_id, user_id, \
                 device, pages, pages_exact, sheets, copies, color, sides, media, time_ms, \
                 outcome, origin_site) \
                 SELECT $1::text, $2::text, * FROM unnest($3::bigint[], $4::text[], \
                 $5::text[], $6::bigint[], $7::text[], $8::text[], $9::bigint[], \
                 $10::bigint[], $11::bigint[], $12::bigint[], $13::text[], $14::text[], \
                 $15::text[], $16::bigint[], $17::text[], $18::text[]) \
                 ON CONFLICT DO NOTHING",
            )
            .await
            .map_err(db)?;
        tx.execute(
            &insert,
            &[
                &site,
                &batch.epoch,
                &seqs,
                &jobs,
                &queues,
                &job_ids,
                &users,
                &devices,
                &pages,
                &exact,
                &sheets,
                &copies,
                &colors,
                &sides,
                &media,
                &times,
                &outcomes,
                &origins,
            ],
        )
        .await
        .map_err(db)?;
    }
    let through = batch.records.last().map_or(acked, |r| r.seq.max(acked));
    tx.execute(
        "UPDATE log_marks SET journal_acked = $3 WHERE site = $1 AND epoch = $2",
        &[&site, &batch.epoch, &int(through)],
    )
    .await
    .map_err(db)?;
    Ok(through)
}

async fn store_jobs(tx: &Transaction<'_>, site: &str, batch: &JobBatch) -> Result<u64, StoreError> {
    let (_, acked) = marks(tx, site, &batch.epoch, true).await?;
    continues("jobs", batch.after, acked)?;
    // One row per job: within a batch the latest announcement wins (an
    // upsert may not touch a row twice in one statement).
    let mut latest: HashMap<&str, &JobAnnouncement> = HashMap::new();
    for job in batch.jobs.iter().filter(|j| j.seq > acked) {
        latest.insert(&job.uuid, job);
    }
    if !latest.is_empty() {
        let jobs: Vec<&JobAnnouncement> = latest.into_values().collect();
        let uuids: Vec<&str> = jobs.iter().map(|j| j.uuid.as_str()).collect();
        let seqs: Vec<i64> = jobs.iter().map(|j| int(j.seq)).collect();
        let owners: Vec<&str> = jobs.iter().map(|j| j.owner.as_str()).collect();
        let names: Vec<&str> = jobs.iter().map(|j| j.name.as_str()).collect();
        let pages: Vec<Option<i64>> = jobs.iter().map(|j| j.pages.map(i64::from)).collect();
        let sizes: Vec<Option<i64>> = jobs.iter().map(|j| j.size.map(int)).collect();
        let submitted: Vec<i64> = jobs.iter().map(|j| j.submitted_ms).collect();
        let states: Vec<&str> = jobs.iter().map(|j| j.state.as_str()).collect();
        let deleted: Vec<i64> = jobs.iter().map(|j| i64::from(j.deleted)).collect();
        // The latest announcement of a job wins: a resend of an older one,
        // or one from an earlier epoch's numbering, does not undo a newer
        // state.
        let upsert = tx
            .prepare_cached(
                "INSERT INTO job_index (site, uuid, epoch, seq, owner, name, pages, size, \
                 submitted_ms, state, deleted) \
                 SELECT $1::text, u.uuid, $2::text, u.seq, u.owner, u.name, u.pages, u.size, \
                 u.submitted_ms, u.state, u.deleted \
                 FROM unnest($3::text[], $4::bigint[], $5::text[], $6::text[], $7::bigint[], \
                 $8::bigint[], $9::bigint[], $10::text[], $11::bigint[]) \
                 AS u (uuid, seq, owner, name, pages, size, submitted_ms, state, deleted) \
                 ON CONFLICT (site, uuid) DO UPDATE SET epoch = excluded.epoch, \
                 seq = excluded.seq, owner = excluded.owner, name = excluded.name, \
                 pages = excluded.pages, size = excluded.size, \
                 submitted_ms = excluded.submitted_ms, state = excluded.state, \
                 deleted = excluded.deleted \
                 WHERE excluded.epoch <> job_index.epoch OR excluded.seq > job_index.seq",
            )
            .await
            .map_err(db)?;
        tx.execute(
            &upsert,
            &[
                &site,
                &batch.epoch,
                &uuids,
                &seqs,
                &owners,
                &names,
                &pages,
                &sizes,
                &submitted,
                &states,
                &deleted,
            ],
        )
        .await
        .map_err(db)?;
    }
    let through = batch.jobs.last().map_or(acked, |j| j.seq.max(acked));
    tx.execute(
        "UPDATE log_marks SET jobs_acked = $3 WHERE site = $1 AND epoch = $2",
        &[&site, &batch.epoch, &int(through)],
    )
    .await
    .map_err(db)?;
    Ok(through)
}

async fn policy_value(tx: &Transaction<'_>, key: &str, lock: bool) -> Result<String, StoreError> {
    let sql = format!(
        "SELECT value FROM policy WHERE key = $1{}",
        if lock { " FOR UPDATE" } else { "" }
    );
    Ok(tx.query_one(&sql, &[&key]).await.map_err(db)?.get(0))
}

async fn set_policy_value(tx: &Transaction<'_>, key: &str, value: &str) -> Result<(), StoreError> {
    tx.execute(
        "UPDATE policy SET value = $2 WHERE key = $1",
        &[&key, &value],
    )
    .await
    .map_err(db)?;
    Ok(())
}

async fn version(tx: &Transaction<'_>, lock: bool) -> Result<u64, StoreError> {
    policy::parse_number("version", &policy_value(tx, "version", lock).await?)
}

async fn edit_policy(tx: &Transaction<'_>, edit: PolicyEdit) -> Result<u64, StoreError> {
    // Every edit takes the version row first: edits are serialised, and
    // each effective one is the next version.
    let before = version(tx, true).await?;
    let mut current = HashMap::new();
    let mut stored_rules = None;
    match edit.needs() {
        EditNeeds::Users(ids) => {
            let rows = tx
                .query(
                    "SELECT id, body FROM users WHERE id = ANY($1) AND removed = 0",
                    &[&ids],
                )
                .await
                .map_err(db)?;
            current.extend(rows.iter().map(|r| (r.get(0), r.get(1))));
        }
        EditNeeds::AllUsers => {
            let rows = tx
                .query("SELECT id, body FROM users WHERE removed = 0", &[])
                .await
                .map_err(db)?;
            current.extend(rows.iter().map(|r| (r.get(0), r.get(1))));
        }
        EditNeeds::Rules => {
            stored_rules = Some(policy::decode_rules(
                &policy_value(tx, "rules", false).await?,
            )?);
        }
    }
    let change = policy::decide(edit, &current, stored_rules.as_ref())?;
    if change.is_empty() {
        return Ok(before);
    }
    let next = before + 1;
    let next_int = int(next);
    if !change.remove.is_empty() {
        tx.execute(
            "DELETE FROM user_lookups WHERE user_id = ANY($1)",
            &[&change.remove],
        )
        .await
        .map_err(db)?;
        tx.execute(
            "UPDATE users SET removed = 1, version = $2 WHERE id = ANY($1)",
            &[&change.remove, &next_int],
        )
        .await
        .map_err(db)?;
    }
    let put_ids: Vec<&str> = change.put.iter().map(|u| u.id.as_str()).collect();
    tx.execute(
        "DELETE FROM user_lookups WHERE user_id = ANY($1)",
        &[&put_ids],
    )
    .await
    .map_err(db)?;
    let holder = tx
        .prepare_cached("SELECT user_id FROM user_lookups WHERE kind = $1 AND lookup = $2")
        .await
        .map_err(db)?;
    let take = tx
        .prepare_cached("INSERT INTO user_lookups (kind, lookup, user_id) VALUES ($1, $2, $3)")
        .await
        .map_err(db)?;
    let store = tx
        .prepare_cached(
            "INSERT INTO users (id, version, removed, body) VALUES ($1, $2, 0, $3) \
             ON CONFLICT (id) DO UPDATE SET version = excluded.version, removed = 0, \
             body = excluded.body",
        )
        .await
        .map_err(db)?;
    for user in &change.put {
        for (kind, lookup) in policy::lookups(user) {
            match tx.query_opt(&holder, &[&kind, &lookup]).await.map_err(db)? {
                Some(row) => {
                    let other: String = row.get(0);
                    if other != user.id {
                        return Err(policy::lookup_taken(user, kind, &other));
                    }
                }
                None => {
                    tx.execute(&take, &[&kind, &lookup, &user.id])
                        .await
                        .map_err(db)?;
                }
            }
        }
        tx.execute(&store, &[&user.id, &next_int, &policy::encode(user)?])
            .await
            .map_err(db)?;
    }
    if let Some(new) = &change.rules {
        set_policy_value(tx, "rules", &policy::encode_rules(new)?).await?;
        set_policy_value(tx, "rules_version", &next.to_string()).await?;
    }
    set_policy_value(tx, "version", &next.to_string()).await?;
    // Delivered to every node's listener when (and only if) this commits.
    tx.execute(
        "SELECT pg_notify($1, $2)",
        &[&POLICY_CHANNEL, &next.to_string()],
    )
    .await
    .map_err(db)?;
    Ok(next)
}

async fn policy_since(tx: &Transaction<'_>, since: u64) -> Result<PolicyDelta, StoreError> {
    let now = version(tx, false).await?;
    if let Some(delta) = policy::delta_without_reading(since, now) {
        return Ok(delta);
    }
    let changed: i64 = tx
        .query_one(
            "SELECT count(*) FROM users WHERE version > $1",
            &[&int(since)],
        )
        .await
        .map_err(db)?
        .get(0);
    if count(changed) as usize > CHUNK_USERS {
        return Ok(PolicyDelta::Snapshot { version: now });
    }
    let mut upsert = Vec::new();
    let mut remove = Vec::new();
    let rows = tx
        .query(
            "SELECT id, removed, body FROM users WHERE version > $1 ORDER BY id",
            &[&int(since)],
        )
        .await
        .map_err(db)?;
    for row in rows {
        if row.get::<_, i64>(1) != 0 {
            remove.push(row.get(0));
        } else {
            upsert.push(policy::decode(row.get(2))?);
        }
    }
    let rules_version = policy::parse_number(
        "rules_version",
        &policy_value(tx, "rules_version", false).await?,
    )?;
    let rules = if rules_version > since {
        Some(policy::decode_rules(
            &policy_value(tx, "rules", false).await?,
        )?)
    } else {
        None
    };
    Ok(PolicyDelta::Changes(PolicyChanges {
        from: since,
        to: now,
        upsert,
        remove,
        rules,
    }))
}

async fn snapshot(
    tx: &Transaction<'_>,
    parts: &mpsc::Sender<SnapshotPart>,
) -> Result<(), StoreError> {
    let users: i64 = tx
        .query_one("SELECT count(*) FROM users WHERE removed = 0", &[])
        .await
        .map_err(db)?
        .get(0);
    let head = SnapshotHead {
        version: version(tx, false).await?,
        users: count(users),
        rules: policy::decode_rules(&policy_value(tx, "rules", false).await?)?,
    };
    parts
        .send(SnapshotPart::Head(head))
        .await
        .map_err(|_| StoreError::Closed)?;
    // A portal reads the users a chunk at a time, so memory stays bounded
    // whatever their number; the snapshot transaction keeps them at one
    // version.
    let statement = tx
        .prepare("SELECT body FROM users WHERE removed = 0 ORDER BY id")
        .await
        .map_err(db)?;
    let portal = tx.bind(&statement, &[]).await.map_err(db)?;
    loop {
        let rows = tx
            .query_portal(&portal, CHUNK_USERS as i32)
            .await
            .map_err(db)?;
        if rows.is_empty() {
            return Ok(());
        }
        let chunk = rows
            .iter()
            .map(|r| policy::decode(r.get(0)))
            .collect::<Result<Vec<PolicyUser>, _>>()?;
        let last = chunk.len() < CHUNK_USERS;
        parts
            .send(SnapshotPart::Users(chunk))
            .await
            .map_err(|_| StoreError::Closed)?;
        if last {
            return Ok(());
        }
    }
}

async fn report(
    tx: &Transaction<'_>,
    by: ReportBy,
    since_ms: i64,
) -> Result<Vec<ReportRow>, StoreError> {
    let key = match by {
        ReportBy::User => "user_id",
        ReportBy::Site => "site",
        ReportBy::Device => "site || '/' || device",
        ReportBy::Day => "to_char(to_timestamp(time_ms / 1000) AT TIME ZONE 'UTC', 'YYYY-MM-DD')",
    };
    let sql = format!(
        "SELECT {key} AS k, \
         count(*) FILTER (WHERE outcome = 'completed'), \
         coalesce(sum(pages) FILTER (WHERE outcome = 'completed'), 0)::bigint, \
         coalesce(sum(sheets) FILTER (WHERE outcome = 'completed'), 0)::bigint, \
         coalesce(sum(pages) FILTER (WHERE outcome = 'completed' AND color = 'color'), 0)::bigint, \
         count(*) FILTER (WHERE outcome <> 'completed'), \
         count(*) FILTER (WHERE outcome = 'completed' AND pages IS NULL) \
         FROM journal WHERE time_ms >= $1 GROUP BY k ORDER BY k"
    );
    let rows = tx.query(&sql, &[&since_ms]).await.map_err(db)?;
    Ok(rows
        .iter()
        .map(|r| ReportRow {
            key: r.get(0),
            jobs: count(r.get(1)),
            pages: count(r.get(2)),
            sheets: count(r.get(3)),
            color_pages: count(r.get(4)),
            not_completed: count(r.get(5)),
            pages_unknown: count(r.get(6)),
        })
        .collect())
}

impl CentralStore for PostgresStore {
    async fn add_site(
        &self,
        name: String,
        token_id: String,
        secret_sha256: [u8; 32],
        expires_ms: i64,
    ) -> Result<(), StoreError> {
        in_transaction!(self, |tx| {
            let added = tx
                .execute(
                    "INSERT INTO sites (name, created_ms) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                    &[&name, &now_ms()],
                )
                .await
                .map_err(db)?;
            if added == 0 {
                return Err(super::sites::exists(&name));
            }
            tx.execute(
                "INSERT INTO enrollment_tokens (id, site, secret_sha256, expires_ms) \
                 VALUES ($1, $2, $3, $4)",
                &[&token_id, &name, &&secret_sha256[..], &expires_ms],
            )
            .await
            .map_err(db)?;
        })
    }

    async fn list_sites(&self) -> Result<Vec<SiteInfo>, StoreError> {
        let client = self.client().await?;
        let rows = client
            .query(
                &format!("SELECT {SITE_COLUMNS} FROM sites ORDER BY name"),
                &[],
            )
            .await
            .map_err(db)?;
        Ok(rows.iter().map(site_from_row).collect())
    }

    async fn revoke_site(&self, name: String) -> Result<(), StoreError> {
        let client = self.client().await?;
        let changed = client
            .execute(
                "UPDATE sites SET revoked_ms = coalesce(revoked_ms, $2) WHERE name = $1",
                &[&name, &now_ms()],
            )
            .await
            .map_err(db)?;
        if changed == 0 {
            return Err(super::sites::no_such_site(&name));
        }
        Ok(())
    }

    async fn check_token(
        &self,
        token_id: String,
        secret_sha256: [u8; 32],
    ) -> Result<Result<String, EnrollRefusal>, StoreError> {
        in_transaction!(self, |tx| {
            check_token(&tx, &token_id, &secret_sha256, now_ms(), false).await?
        })
    }

    async fn complete_enrollment(
        &self,
        token_id: String,
        secret_sha256: [u8; 32],
        certificate_sha256: [u8; 32],
    ) -> Result<Result<String, EnrollRefusal>, StoreError> {
        let now = now_ms();
        in_transaction!(self, |tx| {
            match check_token(&tx, &token_id, &secret_sha256, now, true).await? {
                Err(refusal) => Err(refusal),
                Ok(site) => {
                    tx.execute(
                        "UPDATE enrollment_tokens SET used_ms = $2 WHERE id = $1",
                        &[&token_id, &now],
                    )
                    .await
                    .map_err(db)?;
                    tx.execute(
                        "UPDATE sites SET enrolled_ms = $2, certificate_sha256 = $3 \
                         WHERE name = $1",
                        &[&site, &now, &&certificate_sha256[..]],
                    )
                    .await
                    .map_err(|e| match e.code() {
                        Some(&SqlState::UNIQUE_VIOLATION) => StoreError::Conflict(
                            "this certificate belongs to another site already".into(),
                        ),
                        _ => db(e),
                    })?;
                    Ok(site)
                }
            }
        })
    }

    async fn site_by_certificate(
        &self,
        certificate_sha256: [u8; 32],
    ) -> Result<Option<SiteInfo>, StoreError> {
        let client = self.client().await?;
        let row = client
            .query_opt(
                &format!("SELECT {SITE_COLUMNS} FROM sites WHERE certificate_sha256 = $1"),
                &[&&certificate_sha256[..]],
            )
            .await
            .map_err(db)?;
        Ok(row.as_ref().map(site_from_row))
    }

    async fn begin_session(&self, site: String, epoch: String) -> Result<(u64, u64), StoreError> {
        in_transaction!(self, |tx| {
            tx.execute(
                "UPDATE sites SET last_contact_ms = $2 WHERE name = $1",
                &[&site, &now_ms()],
            )
            .await
            .map_err(db)?;
            marks(&tx, &site, &epoch, false).await?
        })
    }

    async fn store_journal(&self, site: String, batch: JournalBatch) -> Result<u64, StoreError> {
        in_transaction!(self, |tx| store_journal(&tx, &site, &batch).await?)
    }

    async fn store_jobs(&self, site: String, batch: JobBatch) -> Result<u64, StoreError> {
        in_transaction!(self, |tx| store_jobs(&tx, &site, &batch).await?)
    }

    async fn site_applied(
        &self,
        site: String,
        version: u64,
        unknown_rules: Vec<String>,
    ) -> Result<(), StoreError> {
        let client = self.client().await?;
        client
            .execute(
                "UPDATE sites SET policy_version = $2, unknown_rules = $3, last_contact_ms = $4 \
                 WHERE name = $1",
                &[&site, &int(version), &unknown_rules.join(","), &now_ms()],
            )
            .await
            .map_err(db)?;
        Ok(())
    }

    async fn policy_version(&self) -> Result<u64, StoreError> {
        in_snapshot!(self, |tx| version(&tx, false).await?)
    }

    async fn policy_since(&self, since: u64) -> Result<PolicyDelta, StoreError> {
        in_snapshot!(self, |tx| policy_since(&tx, since).await?)
    }

    async fn snapshot(&self, parts: mpsc::Sender<SnapshotPart>) -> Result<(), StoreError> {
        in_snapshot!(self, |tx| snapshot(&tx, &parts).await?)
    }

    async fn edit_policy(&self, edit: PolicyEdit) -> Result<u64, StoreError> {
        in_transaction!(self, |tx| edit_policy(&tx, edit).await?)
    }

    async fn users(&self) -> Result<Vec<PolicyUser>, StoreError> {
        let client = self.client().await?;
        let rows = client
            .query("SELECT body FROM users WHERE removed = 0 ORDER BY id", &[])
            .await
            .map_err(db)?;
        rows.iter().map(|r| policy::decode(r.get(0))).collect()
    }

    async fn report(&self, by: ReportBy, since_ms: i64) -> Result<Vec<ReportRow>, StoreError> {
        in_snapshot!(self, |tx| report(&tx, by, since_ms).await?)
    }

    async fn jobs_of(&self, user: String) -> Result<Vec<IndexedJob>, StoreError> {
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT site, uuid, owner, name, pages, size, submitted_ms, state, deleted \
                 FROM job_index WHERE owner = $1 ORDER BY submitted_ms DESC, uuid LIMIT 1000",
                &[&user],
            )
            .await
            .map_err(db)?;
        Ok(rows
            .iter()
            .map(|r| IndexedJob {
                site: r.get(0),
                uuid: r.get(1),
                owner: r.get(2),
                name: r.get(3),
                pages: r
                    .get::<_, Option<i64>>(4)
                    .and_then(|p| u32::try_from(p).ok()),
                size: r.get::<_, Option<i64>>(5).map(count),
                submitted_ms: r.get(6),
                state: r.get(7),
                deleted: r.get::<_, i64>(8) != 0,
            })
            .collect())
    }

    async fn describe(&self) -> String {
        let status = self.pool.status();
        match self.server_version().await {
            Ok(version) => format!(
                "PostgreSQL {version}{}, {} of at most {} connections open",
                if self.tls.is_some() { " over TLS" } else { "" },
                status.size,
                status.max_size
            ),
            Err(e) => format!("PostgreSQL, unreachable now: {e}"),
        }
    }

    async fn follow_policy(&self, policy: watch::Sender<u64>) {
        let mut down = false;
        loop {
            // Said once per outage; it is retried every second.
            match self.listen_policy(&policy, &mut down).await {
                Ok(()) => tracing::warn!(
                    "the connection that hears other nodes' policy edits ended; reconnecting"
                ),
                Err(e) if !down => {
                    tracing::warn!(error = %e, "not hearing other nodes' policy edits; retrying")
                }
                Err(_) => {}
            }
            down = true;
            tokio::time::sleep(LISTEN_RETRY).await;
        }
    }

    async fn node_started(
        &self,
        address: String,
        certificate_sha256: [u8; 32],
    ) -> Result<(), StoreError> {
        in_transaction!(self, |tx| {
            tx.execute(
                &format!(
                    "INSERT INTO nodes (address, certificate_sha256, started_ms, seen_ms) \
                     VALUES ($1, $2, {DB_NOW_MS}, {DB_NOW_MS}) ON CONFLICT (address) DO UPDATE SET \
                     certificate_sha256 = excluded.certificate_sha256, \
                     started_ms = excluded.started_ms, seen_ms = excluded.seen_ms"
                ),
                &[&address, &&certificate_sha256[..]],
            )
            .await
            .map_err(db)?;
            tx.execute("DELETE FROM site_sessions WHERE node = $1", &[&address])
                .await
                .map_err(db)?;
            tx.execute(
                &format!("DELETE FROM nodes WHERE seen_ms < {DB_NOW_MS} - $1"),
                &[&FORGET_MS],
            )
            .await
            .map_err(db)?;
        })
    }

    async fn node_alive(&self, address: String) -> Result<(), StoreError> {
        let client = self.client().await?;
        client
            .execute(
                &format!("UPDATE nodes SET seen_ms = {DB_NOW_MS} WHERE address = $1"),
                &[&address],
            )
            .await
            .map_err(db)?;
        Ok(())
    }

    async fn node_by_certificate(
        &self,
        certificate_sha256: [u8; 32],
    ) -> Result<Option<String>, StoreError> {
        let client = self.client().await?;
        let row = client
            .query_opt(
                &format!(
                    "SELECT address FROM nodes WHERE certificate_sha256 = $1 \
                     AND seen_ms > {DB_NOW_MS} - $2"
                ),
                &[&&certificate_sha256[..], &ALIVE_MS],
            )
            .await
            .map_err(db)?;
        Ok(row.map(|r| r.get(0)))
    }

    async fn session_opened(&self, site: String, node: String) -> Result<(), StoreError> {
        let client = self.client().await?;
        client
            .execute(
                &format!(
                    "INSERT INTO site_sessions (site, node, since_ms) VALUES ($1, $2, {DB_NOW_MS}) \
                     ON CONFLICT (site) DO UPDATE SET node = excluded.node, \
                     since_ms = excluded.since_ms"
                ),
                &[&site, &node],
            )
            .await
            .map_err(db)?;
        Ok(())
    }

    async fn session_closed(&self, site: String, node: String) -> Result<(), StoreError> {
        let client = self.client().await?;
        client
            .execute(
                "DELETE FROM site_sessions WHERE site = $1 AND node = $2",
                &[&site, &node],
            )
            .await
            .map_err(db)?;
        Ok(())
    }

    async fn sessions_of(&self, sites: Vec<String>) -> Result<HashMap<String, String>, StoreError> {
        let client = self.client().await?;
        let rows = client
            .query(
                &format!(
                    "SELECT s.site, s.node FROM site_sessions s JOIN nodes n ON n.address = s.node \
                     WHERE s.site = ANY($1) AND n.seen_ms > {DB_NOW_MS} - $2"
                ),
                &[&sites, &ALIVE_MS],
            )
            .await
            .map_err(db)?;
        Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
    }

    async fn nodes(&self) -> Result<Vec<NodeInfo>, StoreError> {
        in_snapshot!(self, |tx| {
            let mut listed: Vec<NodeInfo> = tx
                .query(
                    &format!(
                        "SELECT address, started_ms, seen_ms, seen_ms > {DB_NOW_MS} - $1 \
                         FROM nodes ORDER BY address"
                    ),
                    &[&ALIVE_MS],
                )
                .await
                .map_err(db)?
                .iter()
                .map(|r| NodeInfo {
                    address: r.get(0),
                    started_ms: r.get(1),
                    seen_ms: r.get(2),
                    alive: r.get(3),
                    sites: Vec::new(),
                })
                .collect();
            let sessions = tx
                .query("SELECT node, site FROM site_sessions ORDER BY site", &[])
                .await
                .map_err(db)?
                .iter()
                .map(|r| (r.get(0), r.get(1)))
                .collect();
            nodes::attach_sites(&mut listed, sessions);
            listed
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bad_url_is_refused_before_any_connection() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let e = runtime
            .block_on(PostgresStore::connect(
                "postgres://central@localhost:notaport/central",
                2,
                None,
            ))
            .unwrap_err();
        assert!(e.to_string().contains("[storage] url"), "{e}");
    }
}
