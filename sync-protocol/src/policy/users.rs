//! Users as both ends know them: who they are, their groups, and how they
//! log in at a printer.
//!
//! Pure: checking a new user, reading the CSV import format, and turning
//! typed secrets into what the store keeps ([`prepare`]). The store module
//! persists the result; nothing here touches the disk.

use std::io::Read;

use crate::message::PolicyUser;

use super::credentials::{
    self, CredentialError, LookupKey, LookupKind, Secret, check_password, normalize_card,
    normalize_pin,
};

/// A user to add, with the secrets as typed.
#[derive(Debug, Clone, Default)]
pub struct NewUser {
    /// Login name; letters, digits, `.`, `_`, `-`, `@`.
    pub id: String,
    /// Name shown at the printer.
    pub display_name: String,
    /// E-mail address, if known.
    pub email: Option<String>,
    /// Groups, for rules and quotas.
    pub groups: Vec<String>,
    /// PIN, if the user logs in with one.
    pub pin: Option<Secret>,
    /// Card or badge numbers.
    pub cards: Vec<Secret>,
    /// Password, if the user logs in with one.
    pub password: Option<Secret>,
}

/// A user as listed: never any secret, only which kinds of login it has.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserSummary {
    /// Login name.
    pub id: String,
    /// Name shown at the printer.
    pub display_name: String,
    /// E-mail address.
    pub email: Option<String>,
    /// Groups.
    pub groups: Vec<String>,
    /// Whether logins are refused.
    pub disabled: bool,
    /// Has a password.
    pub password: bool,
    /// Has a PIN (with the user name).
    pub pin: bool,
    /// Has a PIN that works alone.
    pub pin_only: bool,
    /// Number of cards.
    pub cards: usize,
}

/// A user as a login sees them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoginUser {
    /// Login name.
    pub id: String,
    /// Name shown at the printer.
    pub display_name: String,
    /// Groups, for rules.
    pub groups: Vec<String>,
    /// Whether logins are refused.
    pub disabled: bool,
}

/// A user ready to store: secrets replaced by their hashes.
#[derive(Debug, Clone)]
pub struct PreparedUser {
    /// Login name.
    pub id: String,
    /// Name shown at the printer.
    pub display_name: String,
    /// E-mail address.
    pub email: Option<String>,
    /// Groups, deduplicated.
    pub groups: Vec<String>,
    /// argon2id of the password.
    pub password_phc: Option<String>,
    /// The PIN's keyed hash (`credentials::pin_hash`; argon2id in
    /// databases from before fleet policy).
    pub pin_phc: Option<String>,
    /// HMAC lookup keys: cards, and the PIN when PIN-only login is on.
    pub lookups: Vec<(LookupKind, [u8; 32])>,
}

/// Why a user was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UserError {
    /// The id does not fit the rules.
    #[error("user id {0:?} must be 1 to 64 letters, digits, '.', '_', '-' or '@'")]
    BadId(String),
    /// No display name.
    #[error("user {0}: display name is empty")]
    NoName(String),
    /// The e-mail address has no `@`.
    #[error("user {0}: e-mail address {1:?} is not valid")]
    BadEmail(String, String),
    /// A group name does not fit the rules.
    #[error("user {0}: group {1:?} must be 1 to 64 letters, digits, '.', '_' or '-'")]
    BadGroup(String, String),
    /// No way to log in at all.
    #[error("user {0}: give at least one of PIN, card or password")]
    NoCredential(String),
    /// A PIN, card or password of the wrong shape (the value is not repeated).
    #[error("user {0}: {1}")]
    Credential(String, CredentialError),
    /// The same card twice for one user.
    #[error("user {0}: the same card is given twice")]
    DuplicateCard(String),
}

impl NewUser {
    /// Checks everything that can be checked without the store.
    pub fn check(&self) -> Result<(), UserError> {
        if !is_name(&self.id, true) {
            return Err(UserError::BadId(self.id.clone()));
        }
        if self.display_name.trim().is_empty() {
            return Err(UserError::NoName(self.id.clone()));
        }
        if let Some(email) = &self.email
            && !(email.contains('@') && email.len() <= 254 && !email.contains(char::is_whitespace))
        {
            return Err(UserError::BadEmail(self.id.clone(), email.clone()));
        }
        if let Some(bad) = self.groups.iter().find(|g| !is_name(g, false)) {
            return Err(UserError::BadGroup(self.id.clone(), bad.clone()));
        }
        if self.pin.is_none() && self.cards.is_empty() && self.password.is_none() {
            return Err(UserError::NoCredential(self.id.clone()));
        }
        let credential = |e| UserError::Credential(self.id.clone(), e);
        if let Some(pin) = &self.pin {
            normalize_pin(pin).map_err(credential)?;
        }
        if let Some(password) = &self.password {
            check_password(password).map_err(credential)?;
        }
        let mut cards = Vec::new();
        for card in &self.cards {
            let card = normalize_card(card).map_err(credential)?;
            if cards.contains(&card) {
                return Err(UserError::DuplicateCard(self.id.clone()));
            }
            cards.push(card);
        }
        Ok(())
    }
}

fn is_name(s: &str, allow_at: bool) -> bool {
    (1..=64).contains(&s.len())
        && s.bytes().all(|b| {
            b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-') || (allow_at && b == b'@')
        })
}

/// Checks a user and replaces its secrets by hashes (argon2id is slow on
/// purpose: tens of milliseconds per secret). `pin_only` also stores the
/// PIN's lookup key, so the PIN alone identifies the user.
pub fn prepare(user: &NewUser, key: &LookupKey, pin_only: bool) -> Result<PreparedUser, UserError> {
    user.check()?;
    let credential = |e| UserError::Credential(user.id.clone(), e);
    let mut lookups = Vec::new();
    let pin_phc = match &user.pin {
        Some(pin) => {
            let pin = normalize_pin(pin).map_err(credential)?;
            if pin_only {
                lookups.push((LookupKind::PinOnly, key.lookup(LookupKind::PinOnly, &pin)));
            }
            Some(credentials::pin_hash(key, &user.id, &pin))
        }
        None => None,
    };
    for card in &user.cards {
        let card = normalize_card(card).map_err(credential)?;
        lookups.push((LookupKind::Card, key.lookup(LookupKind::Card, &card)));
    }
    let password_phc = match &user.password {
        Some(p) => Some(credentials::hash_for_user(&user.id, p.expose()).map_err(credential)?),
        None => None,
    };
    let mut groups = user.groups.clone();
    groups.sort();
    groups.dedup();
    Ok(PreparedUser {
        id: user.id.clone(),
        display_name: user.display_name.trim().to_owned(),
        email: user.email.clone(),
        groups,
        password_phc,
        pin_phc,
        lookups,
    })
}

/// `user` as fleet policy carries it: hashed under the fleet key `key`,
/// with a PIN-only lookup when the fleet allows PIN-only login (its PINs
/// must then be unique).
pub fn policy_user(
    user: &NewUser,
    key: &LookupKey,
    pin_only: bool,
) -> Result<PolicyUser, UserError> {
    let prepared = prepare(user, key, pin_only)?;
    let hex_of = |kind| {
        prepared
            .lookups
            .iter()
            .filter(move |(k, _)| *k == kind)
            .map(|(_, l)| hex::encode(l))
    };
    Ok(PolicyUser {
        id: prepared.id.clone(),
        name: prepared.display_name.clone(),
        email: prepared.email.clone(),
        groups: prepared.groups.clone(),
        disabled: false,
        password: prepared.password_phc.clone(),
        pin: prepared.pin_phc.clone(),
        pin_only: hex_of(LookupKind::PinOnly).next(),
        cards: hex_of(LookupKind::Card).collect(),
    })
}

/// A user received in fleet policy, as the site's store keeps it. Hashes
/// that are not 32-byte hex are refused: the policy is damaged.
pub fn from_policy(user: &PolicyUser) -> Result<(PreparedUser, bool), UserError> {
    let lookup = |hex_value: &str| {
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(hex_value, &mut bytes)
            .map(|()| bytes)
            .map_err(|_| UserError::Credential(user.id.clone(), CredentialError::BadCard))
    };
    if !is_name(&user.id, true) {
        return Err(UserError::BadId(user.id.clone()));
    }
    let mut lookups = Vec::new();
    if let Some(pin_only) = &user.pin_only {
        lookups.push((LookupKind::PinOnly, lookup(pin_only)?));
    }
    for card in &user.cards {
        lookups.push((LookupKind::Card, lookup(card)?));
    }
    Ok((
        PreparedUser {
            id: user.id.clone(),
            display_name: user.name.clone(),
            email: user.email.clone(),
            groups: user.groups.clone(),
            password_phc: user.password.clone(),
            pin_phc: user.pin.clone(),
            lookups,
        },
        user.disabled,
    ))
}

/// The columns of the CSV import format.
pub const CSV_COLUMNS: &[&str] = &[
    "id",
    "display_name",
    "email",
    "groups",
    "pin",
    "cards",
    "password",
];

/// Reads users from CSV with a header row naming some of [`CSV_COLUMNS`]
/// (`id` and `display_name` required; `groups` and `cards` separated by
/// `;`). Every row is checked; all problems are reported together, each with
/// its line, and no user is returned unless every row is good.
pub fn parse_csv(input: impl Read) -> Result<Vec<NewUser>, Vec<String>> {
    let mut reader = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .from_reader(input);
    let headers = match reader.headers() {
        Ok(h) => h.clone(),
        Err(e) => return Err(vec![format!("line 1: {e}")]),
    };
    let mut problems = Vec::new();
    for h in headers.iter() {
        if !CSV_COLUMNS.contains(&h) {
            problems.push(format!(
                "line 1: unknown column {h:?} (columns: {})",
                CSV_COLUMNS.join(", ")
            ));
        }
    }
    for required in ["id", "display_name"] {
        if !headers.iter().any(|h| h == required) {
            problems.push(format!("line 1: the column {required:?} is required"));
        }
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    let column = |record: &csv::StringRecord, name: &str| -> Option<String> {
        headers
            .iter()
            .position(|h| h == name)
            .and_then(|i| record.get(i))
            .filter(|v| !v.is_empty())
            .map(str::to_owned)
    };
    let list = |value: Option<String>| -> Vec<String> {
        value
            .map(|v| {
                v.split(';')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default()
    };
    let mut users: Vec<NewUser> = Vec::new();
    for (index, record) in reader.records().enumerate() {
        let line = index + 2;
        let record = match record {
            Ok(r) => r,
            Err(e) => {
                problems.push(format!("line {line}: {e}"));
                continue;
            }
        };
        let user = NewUser {
            id: column(&record, "id").unwrap_or_default(),
            display_name: column(&record, "display_name").unwrap_or_default(),
            email: column(&record, "email"),
            groups: list(column(&record, "groups")),
            pin: column(&record, "pin").map(Secret::new),
            cards: list(column(&record, "cards"))
                .into_iter()
                .map(Secret::new)
                .collect(),
            password: column(&record, "password").map(Secret::new),
        };
        if let Err(e) = user.check() {
            problems.push(format!("line {line}: {e}"));
        } else if users.iter().any(|u| u.id == user.id) {
            problems.push(format!("line {line}: user {} appears twice", user.id));
        } else {
            users.push(user);
        }
    }
    if problems.is_empty() {
        Ok(users)
    } else {
        Err(problems)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alice() -> NewUser {
        NewUser {
            id: "alice".into(),
            display_name: "Alice Smith".into(),
            email: Some("alice@example.com".into()),
            groups: vec!["finance".into(), "staff".into(), "finance".into()],
            pin: Some(Secret::new("4711")),
            cards: vec![Secret::new("04:A2:19:FF")],
            password: None,
        }
    }

    #[test]
    fn a_good_user_is_prepared_without_its_secrets() {
        let key = LookupKey::new([9; 32]);
        let prepared = prepare(&alice(), &key, true).unwrap();
        assert_eq!(prepared.groups, ["finance", "staff"]);
        let pin = prepared.pin_phc.as_deref().unwrap();
        assert!(credentials::is_keyed(pin), "{pin}");
        assert!(credentials::verify_pin_hash(&key, pin, "alice", "4711"));
        assert!(!credentials::verify_pin_hash(&key, pin, "alice", "4712"));
        // Bound to the user: the same PIN hash is useless for bob.
        assert!(!credentials::verify_pin_hash(&key, pin, "bob", "4711"));
        // And to the key.
        assert!(!credentials::verify_pin_hash(
            &LookupKey::new([8; 32]),
            pin,
            "alice",
            "4711"
        ));
        assert!(!format!("{prepared:?}").contains("4711"));
        assert_eq!(prepared.lookups.len(), 2, "PIN-only and card");
        let without_pin_only = prepare(&alice(), &key, false).unwrap();
        assert_eq!(
            without_pin_only.lookups,
            [(LookupKind::Card, key.lookup(LookupKind::Card, "04A219FF"))]
        );
    }

    #[test]
    fn a_policy_user_carries_hashes_only_and_comes_back_as_stored() {
        let key = LookupKey::new([9; 32]);
        let mut user = alice();
        user.password = Some(Secret::new("correct horse"));
        let wire = policy_user(&user, &key, true).unwrap();
        let json = serde_json::to_string(&wire).unwrap();
        for secret in ["4711", "04A219FF", "04:A2:19:FF", "correct horse"] {
            assert!(!json.contains(secret), "{secret} in {json}");
        }
        assert!(wire.password.as_deref().unwrap().starts_with("$argon2id$"));
        let (stored, disabled) = from_policy(&wire).unwrap();
        assert!(!disabled);
        assert_eq!(stored.pin_phc, wire.pin);
        assert_eq!(
            stored.lookups,
            [
                (LookupKind::PinOnly, key.lookup(LookupKind::PinOnly, "4711")),
                (LookupKind::Card, key.lookup(LookupKind::Card, "04A219FF")),
            ]
        );
        let damaged = PolicyUser {
            cards: vec!["zz".into()],
            ..wire
        };
        assert!(from_policy(&damaged).is_err());
    }

    #[test]
    fn bad_users_are_refused_without_repeating_secrets() {
        let mut u = alice();
        u.pin = Some(Secret::new("12x4"));
        let err = u.check().unwrap_err().to_string();
        assert!(err.contains("PIN") && !err.contains("12x4"), "{err}");
        let mut u = alice();
        u.id = "al ice".into();
        assert!(matches!(u.check(), Err(UserError::BadId(_))));
        let mut u = alice();
        u.pin = None;
        u.cards.clear();
        assert!(matches!(u.check(), Err(UserError::NoCredential(_))));
        let mut u = alice();
        u.cards.push(Secret::new("04a219ff"));
        assert!(matches!(u.check(), Err(UserError::DuplicateCard(_))));
    }

    #[test]
    fn csv_import_reads_all_columns() {
        let csv = "id,display_name,email,groups,pin,cards,password\n\
                   alice,Alice Smith,alice@example.com,finance;staff,4711,04A219FF;12345678,\n\
                   bob,Bob Jones,,staff,,,correct horse battery\n";
        let users = parse_csv(csv.as_bytes()).unwrap();
        assert_eq!(users.len(), 2);
        assert_eq!(users[0].groups, ["finance", "staff"]);
        assert_eq!(users[0].cards.len(), 2);
        assert_eq!(users[1].email, None);
        assert!(users[1].password.is_some());
    }

    #[test]
    fn csv_problems_are_all_reported_with_lines() {
        let csv =
            "id,display_name,pin\nalice,Alice,12\n,Nobody,1234\nbob,Bob,1234\nbob,Bob again,9999\n";
        let problems = parse_csv(csv.as_bytes()).unwrap_err();
        assert_eq!(problems.len(), 3, "{problems:?}");
        assert!(problems[0].starts_with("line 2:"));
        assert!(problems[1].starts_with("line 3:"));
        assert!(problems[2].starts_with("line 5:"));
        let bad_header = parse_csv("id,name\nx,y\n".as_bytes()).unwrap_err();
        assert!(
            bad_header
                .iter()
                .any(|p| p.contains("unknown column \"name\""))
        );
    }
}
