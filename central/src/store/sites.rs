//! SQL for sites and their enrollment tokens.

use rusqlite::{Connection, OptionalExtension, Row, params};
use sync_protocol::message::RefusalCode;

use super::StoreError;

/// A site as central knows it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SiteInfo {
    /// Its name.
    pub name: String,
    /// When it was added.
    pub created_ms: i64,
    /// When it enrolled (None: token not used yet).
    pub enrolled_ms: Option<i64>,
    /// When it was revoked.
    pub revoked_ms: Option<i64>,
    /// When it last began a session.
    pub last_contact_ms: Option<i64>,
    /// The policy version it last said it enforces.
    pub policy_version: u64,
    /// Rules it said it cannot enforce.
    pub unknown_rules: Vec<String>,
}

/// Why an enrollment token is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EnrollRefusal {
    /// No such token, or the secret does not match.
    BadToken,
    /// Its time is over.
    Expired,
    /// It was used already.
    Used,
    /// Its site was revoked.
    Revoked,
}

impl EnrollRefusal {
    /// The protocol's refusal code and a message for the site's admin.
    pub fn refusal(self) -> (RefusalCode, &'static str) {
        match self {
            EnrollRefusal::BadToken => (
                RefusalCode::BadToken,
                "this enrollment token is not one central issued; copy it again from \
                 `central site add`",
            ),
            EnrollRefusal::Expired => (
                RefusalCode::TokenExpired,
                "this enrollment token has expired; ask for a new one (`central site add` \
                 after `central site revoke`)",
            ),
            EnrollRefusal::Used => (
                RefusalCode::TokenUsed,
                "this enrollment token was used already; a token enrolls one site once",
            ),
            EnrollRefusal::Revoked => (
                RefusalCode::Revoked,
                "the site this token was issued for has been revoked",
            ),
        }
    }
}

const SITE_COLUMNS: &str = "name, created_ms, enrolled_ms, revoked_ms, last_contact_ms, \
                            policy_version, unknown_rules";

/// The stored, comma-separated list of rules a site cannot enforce.
pub(super) fn split_unknown_rules(stored: &str) -> Vec<String> {
    stored
        .split(',')
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

/// The error for adding a site whose name is taken.
pub(super) fn exists(name: &str) -> StoreError {
    StoreError::Conflict(format!(
        "site {name} exists already; `central site revoke {name}` first to enroll it anew \
         under another name, or choose another name"
    ))
}

/// The error for naming a site there is none of.
pub(super) fn no_such_site(name: &str) -> StoreError {
    StoreError::NotFound(format!(
        "no site named {name}; `central site list` shows them"
    ))
}

fn site_from_row(row: &Row<'_>) -> rusqlite::Result<SiteInfo> {
    let unknown: String = row.get(6)?;
    Ok(SiteInfo {
        name: row.get(0)?,
        created_ms: row.get(1)?,
        enrolled_ms: row.get(2)?,
        revoked_ms: row.get(3)?,
        last_contact_ms: row.get(4)?,
        policy_version: row.get::<_, i64>(5)?.max(0) as u64,
        unknown_rules: split_unknown_rules(&unknown),
    })
}

pub(super) fn add(
    conn: &Connection,
    name: &str,
    token_id: &str,
    secret_sha256: &[u8; 32],
    expires_ms: i64,
    now_ms: i64,
) -> Result<(), StoreError> {
    let taken: bool = conn
        .prepare_cached("SELECT count(*) FROM sites WHERE name = ?1")?
        .query_row(params![name], |r| r.get::<_, i64>(0))?
        > 0;
    if taken {
        return Err(exists(name));
    }
    conn.prepare_cached("INSERT INTO sites (name, created_ms) VALUES (?1, ?2)")?
        .execute(params![name, now_ms])?;
    conn.prepare_cached(
        "INSERT INTO enrollment_tokens (id, site, secret_sha256, expires_ms) \
         VALUES (?1, ?2, ?3, ?4)",
    )?
    .execute(params![token_id, name, &secret_sha256[..], expires_ms])?;
    Ok(())
}

pub(super) fn list(conn: &Connection) -> Result<Vec<SiteInfo>, StoreError> {
    let mut stmt =
        conn.prepare_cached(&format!("SELECT {SITE_COLUMNS} FROM sites ORDER BY name"))?;
    let rows = stmt.query_map([], site_from_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

pub(super) fn revoke(conn: &Connection, name: &str, now_ms: i64) -> Result<(), StoreError> {
    let changed = conn
        .prepare_cached("UPDATE sites SET revoked_ms = coalesce(revoked_ms, ?2) WHERE name = ?1")?
        .execute(params![name, now_ms])?;
    if changed == 0 {
        return Err(no_such_site(name));
    }
    Ok(())
}

pub(super) fn check_token(
    conn: &Connection,
    token_id: &str,
    secret_sha256: &[u8; 32],
    now_ms: i64,
) -> Result<Result<String, EnrollRefusal>, StoreError> {
    let token = conn
        .prepare_cached(
            "SELECT t.site, t.secret_sha256, t.expires_ms, t.used_ms, s.revoked_ms \
             FROM enrollment_tokens t JOIN sites s ON s.name = t.site WHERE t.id = ?1",
        )?
        .query_row(params![token_id], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, Vec<u8>>(1)?,
                r.get::<_, i64>(2)?,
                r.get::<_, Option<i64>>(3)?,
                r.get::<_, Option<i64>>(4)?,
            ))
        })
        .optional()?;
    let Some((site, secret, expires_ms, used_ms, revoked_ms)) = token else {
        return Ok(Err(EnrollRefusal::BadToken));
    };
    let stored = StoredToken {
        secret_sha256: &secret,
        expires_ms,
        used: used_ms.is_some(),
        revoked: revoked_ms.is_some(),
    };
    Ok(stored.judge(secret_sha256, now_ms).map(|()| site))
}

/// A stored enrollment token, as both backends read it.
pub(super) struct StoredToken<'a> {
    /// SHA-256 of its secret.
    pub(super) secret_sha256: &'a [u8],
    /// When it stops working.
    pub(super) expires_ms: i64,
    /// It enrolled its site already.
    pub(super) used: bool,
    /// Its site was revoked.
    pub(super) revoked: bool,
}

impl StoredToken<'_> {
    /// Whether a site presenting a secret of this SHA-256 at `now_ms` may
    /// enroll with it.
    pub(super) fn judge(&self, secret_sha256: &[u8; 32], now_ms: i64) -> Result<(), EnrollRefusal> {
        if !constant_time_eq(self.secret_sha256, secret_sha256) {
            Err(EnrollRefusal::BadToken)
        } else if self.used {
            Err(EnrollRefusal::Used)
        } else if self.revoked {
            Err(EnrollRefusal::Revoked)
        } else if now_ms >= self.expires_ms {
            Err(EnrollRefusal::Expired)
        } else {
            Ok(())
        }
    }
}

/// Compares secrets in time that does not depend on where they differ.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

pub(super) fn complete_enrollment(
    conn: &Connection,
    token_id: &str,
    secret_sha256: &[u8; 32],
    certificate_sha256: &[u8; 32],
    now_ms: i64,
) -> Result<Result<String, EnrollRefusal>, StoreError> {
    let site = match check_token(conn, token_id, secret_sha256, now_ms)? {
        Ok(site) => site,
        Err(refusal) => return Ok(Err(refusal)),
    };
    conn.prepare_cached("UPDATE enrollment_tokens SET used_ms = ?2 WHERE id = ?1")?
        .execute(params![token_id, now_ms])?;
    conn.prepare_cached(
        "UPDATE sites SET enrolled_ms = ?2, certificate_sha256 = ?3 WHERE name = ?1",
    )?
    .execute(params![site, now_ms, &certificate_sha256[..]])?;
    Ok(Ok(site))
}

pub(super) fn by_certificate(
    conn: &Connection,
    certificate_sha256: &[u8; 32],
) -> Result<Option<SiteInfo>, StoreError> {
    Ok(conn
        .prepare_cached(&format!(
            "SELECT {SITE_COLUMNS} FROM sites WHERE certificate_sha256 = ?1"
        ))?
        .query_row(params![&certificate_sha256[..]], site_from_row)
        .optional()?)
}

pub(super) fn applied(
    conn: &Connection,
    site: &str,
    version: u64,
    unknown_rules: &[String],
    now_ms: i64,
) -> Result<(), StoreError> {
    conn.prepare_cached(
        "UPDATE sites SET policy_version = ?2, unknown_rules = ?3, last_contact_ms = ?4 \
         WHERE name = ?1",
    )?
    .execute(params![
        site,
        i64::try_from(version).unwrap_or(i64::MAX),
        unknown_rules.join(","),
        now_ms
    ])?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    use super::super::test_db as db;

    #[test]
    fn a_token_enrolls_its_site_once_before_it_expires() {
        let conn = db();
        add(&conn, "branch-1", "t1", &[1; 32], 1_000, 0).unwrap();
        assert!(matches!(
            add(&conn, "branch-1", "t2", &[1; 32], 1_000, 0),
            Err(StoreError::Conflict(_))
        ));
        assert_eq!(
            check_token(&conn, "t1", &[2; 32], 10).unwrap(),
            Err(EnrollRefusal::BadToken)
        );
        assert_eq!(
            check_token(&conn, "nope", &[1; 32], 10).unwrap(),
            Err(EnrollRefusal::BadToken)
        );
        assert_eq!(
            check_token(&conn, "t1", &[1; 32], 1_000).unwrap(),
            Err(EnrollRefusal::Expired)
        );
        assert_eq!(
            complete_enrollment(&conn, "t1", &[1; 32], &[9; 32], 10).unwrap(),
            Ok("branch-1".into())
        );
        assert_eq!(
            complete_enrollment(&conn, "t1", &[1; 32], &[8; 32], 11).unwrap(),
            Err(EnrollRefusal::Used)
        );
        let site = by_certificate(&conn, &[9; 32]).unwrap().unwrap();
        assert_eq!(
            (site.name.as_str(), site.enrolled_ms),
            ("branch-1", Some(10))
        );
        assert!(by_certificate(&conn, &[8; 32]).unwrap().is_none());
    }

    #[test]
    fn a_revoked_sites_token_is_refused_and_revocation_is_recorded() {
        let conn = db();
        add(&conn, "branch-2", "t", &[1; 32], 1_000, 0).unwrap();
        revoke(&conn, "branch-2", 5).unwrap();
        assert_eq!(
            check_token(&conn, "t", &[1; 32], 10).unwrap(),
            Err(EnrollRefusal::Revoked)
        );
        assert!(matches!(
            revoke(&conn, "nowhere", 5),
            Err(StoreError::NotFound(_))
        ));
        assert_eq!(list(&conn).unwrap()[0].revoked_ms, Some(5));
    }
}
