//! Credentials: how PINs, passwords and card numbers are checked and stored.
//!
//! Pure functions, no I/O. Two kinds of protection, for two kinds of lookup:
//!
//! - **Passwords** are stored as argon2id PHC strings (salted,
//!   memory-hard, parameters inside the string). The user is known first,
//!   so the hash is fetched by user id and verified; the user id is part of
//!   the hashed input, so a hash copied to another user is useless.
//! - **PINs, card numbers and PIN-only PINs** are stored as HMAC-SHA256
//!   under a secret key ([`LookupKey`]: the installation's, or the fleet's
//!   once a site is enrolled). Cards and PIN-only PINs identify the user by
//!   themselves, so they must be found by value; a PIN with its user name is
//!   hashed with the user id ([`pin_hash`]). A 4–12 digit PIN under argon2
//!   would still fall to an offline search in minutes, while argon2 made
//!   simultaneous PIN logins queue for most of a second: the key, kept
//!   apart from the database, is the PIN's real protection. Older argon2
//!   PIN hashes still verify. See ARCHITECTURE.md for what a stolen disk
//!   costs.
//!
//! Nothing here logs, displays or returns a secret; [`Secret`] does not
//! even print itself.

use std::fmt;

use argon2::Argon2;
use argon2::password_hash::PasswordHasher;
use argon2::password_hash::phc::PasswordHash;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

/// A secret typed by a person or read from a card: never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// The value, for hashing only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// Why a credential value was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CredentialError {
    /// PINs are 4 to 12 digits.
    #[error("a PIN must be 4 to 12 digits")]
    BadPin,
    /// Passwords are 8 to 256 characters.
    #[error("a password must be 8 to 256 characters")]
    BadPassword,
    /// Card numbers are 4 to 64 letters or digits once separators are removed.
    #[error("a card number must be 4 to 64 letters or digits (spaces, '-' and ':' are ignored)")]
    BadCard,
    /// The hashing library failed (it only does on invalid parameters).
    #[error("hashing failed: {0}")]
    Hashing(String),
}

/// What a lookup key is for; part of the hashed input, so a card number and
/// a PIN with the same digits never collide.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LookupKind {
    /// A badge or card number.
    Card,
    /// A PIN that identifies its user alone.
    PinOnly,
    /// A PIN given with its user name (hashed with the user id).
    Pin,
}

impl LookupKind {
    /// The name stored in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            LookupKind::Card => "card",
            LookupKind::PinOnly => "pin_only",
            LookupKind::Pin => "pin",
        }
    }
}

/// The installation's secret key for lookup hashes.
#[derive(Clone)]
pub struct LookupKey([u8; 32]);

impl LookupKey {
    /// Wraps 32 key bytes.
    pub fn new(bytes: [u8; 32]) -> LookupKey {
        LookupKey(bytes)
    }

    /// HMAC-SHA256 of a normalized value under this key.
    pub fn lookup(&self, kind: LookupKind, normalized: &str) -> [u8; 32] {
        // RFC 2104 pads a key shorter than the hash's block with zeros;
        // doing it here gives the fixed-size key the infallible constructor takes.
        let mut block = [0u8; 64];
        block[..32].copy_from_slice(&self.0);
        let mut mac = <Hmac<Sha256> as KeyInit>::new(&block.into());
        mac.update(kind.as_str().as_bytes());
        mac.update(&[0]);
        mac.update(normalized.as_bytes());
        mac.finalize().into_bytes().into()
    }
}

impl fmt::Debug for LookupKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("LookupKey(***)")
    }
}

/// The prefix of a keyed PIN hash as stored (argon2 PHC strings start `$`).
const KEYED: &str = "hmac-sha256:";

/// The stored form of `user_id`'s normalized PIN: HMAC-SHA256 under `key`
/// of the user id and the PIN, as `hmac-sha256:<hex>`.
pub fn pin_hash(key: &LookupKey, user_id: &str, pin: &str) -> String {
    format!(
        "{KEYED}{}",
        hex::encode(key.lookup(LookupKind::Pin, &bound(user_id, pin)))
    )
}

/// Whether `stored` is a keyed PIN hash ([`pin_hash`]) rather than argon2.
pub fn is_keyed(stored: &str) -> bool {
    stored.starts_with(KEYED)
}

/// Whether `pin` is `user_id`'s PIN by the keyed hash `stored`, compared in
/// constant time.
pub fn verify_pin_hash(key: &LookupKey, stored: &str, user_id: &str, pin: &str) -> bool {
    let expected = pin_hash(key, user_id, pin);
    expected.len() == stored.len()
        && expected
            .bytes()
            .zip(stored.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

/// Checks a PIN's shape.
pub fn normalize_pin(pin: &Secret) -> Result<String, CredentialError> {
    let pin = pin.expose().trim();
    if (4..=12).contains(&pin.len()) && pin.bytes().all(|b| b.is_ascii_digit()) {
        Ok(pin.to_owned())
    } else {
        Err(CredentialError::BadPin)
    }
}

/// Card readers report the same card as `04:A2:19:FF`, `04a219ff` or
/// `04 a2 19 ff`; all of these are one card.
pub fn normalize_card(card: &Secret) -> Result<String, CredentialError> {
    let normalized: String = card
        .expose()
        .chars()
        .filter(|c| !matches!(c, ' ' | '-' | ':'))
        .map(|c| c.to_ascii_uppercase())
        .collect();
    if (4..=64).contains(&normalized.len()) && normalized.chars().all(|c| c.is_ascii_alphanumeric())
    {
        Ok(normalized)
    } else {
        Err(CredentialError::BadCard)
    }
}

/// Checks a password's length.
pub fn check_password(password: &Secret) -> Result<(), CredentialError> {
    if (8..=256).contains(&password.expose().chars().count()) {
        Ok(())
    } else {
        Err(CredentialError::BadPassword)
    }
}

/// argon2id PHC string for `secret`, bound to `user_id`.
pub fn hash_for_user(user_id: &str, secret: &str) -> Result<String, CredentialError> {
    Argon2::default()
        .hash_password(bound(user_id, secret).as_bytes())
        .map(|h| h.to_string())
        .map_err(|e| CredentialError::Hashing(e.to_string()))
}

/// Checks secrets against [`hash_for_user`] hashes with argon2 memory
/// allocated once and reused: a long-lived checker owned by one thread
/// keeps one buffer (19 MiB with the default parameters), instead of every
/// check allocating its own and the allocator keeping one per thread.
#[derive(Default)]
pub struct HashChecker {
    blocks: Vec<argon2::Block>,
}

impl HashChecker {
    /// A checker with no memory yet (it grows to the first hash's needs).
    pub fn new() -> HashChecker {
        HashChecker::default()
    }

    /// Whether `secret` matches `phc` for `user_id`; the comparison is
    /// constant-time (the `Output` equality of the PHC crate).
    pub fn verify_for_user(&mut self, phc: &str, user_id: &str, secret: &str) -> bool {
        let Ok(parsed) = PasswordHash::new(phc) else {
            return false;
        };
        let (Some(salt), Some(expected)) = (&parsed.salt, &parsed.hash) else {
            return false;
        };
        let (Ok(algorithm), Ok(params)) = (
            argon2::Algorithm::try_from(parsed.algorithm.as_str()),
            argon2::Params::try_from(&parsed),
        ) else {
            return false;
        };
        let version = match parsed.version.map(argon2::Version::try_from) {
            None => argon2::Version::default(),
            Some(Ok(v)) => v,
            Some(Err(_)) => return false,
        };
        let need = params.block_count();
        if self.blocks.len() < need {
            self.blocks.resize(need, argon2::Block::new());
        }
        let mut out = vec![0u8; expected.as_bytes().len()];
        let hashed = Argon2::new(algorithm, version, params).hash_password_into_with_memory(
            bound(user_id, secret).as_bytes(),
            salt,
            &mut out,
            &mut self.blocks[..need],
        );
        hashed.is_ok()
            && argon2::password_hash::phc::Output::new(&out).is_ok_and(|o| o == *expected)
    }
}

fn bound(user_id: &str, secret: &str) -> String {
    format!("{user_id}\0{secret}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use argon2::password_hash::PasswordVerifier;

    /// The argon2 crate's own verification, the reference for [`HashChecker`].
    fn verify_for_user(phc: &str, user_id: &str, secret: &str) -> bool {
        PasswordHash::new(phc).is_ok_and(|parsed| {
            Argon2::default()
                .verify_password(bound(user_id, secret).as_bytes(), &parsed)
                .is_ok()
        })
    }

    #[test]
    fn secrets_do_not_print() {
        let s = Secret::new("1234");
        assert_eq!(format!("{s:?}"), "Secret(***)");
        assert!(!format!("{:?}", LookupKey::new([7; 32])).contains('7'));
    }

    #[test]
    fn pins_and_cards_are_normalized() {
        assert_eq!(normalize_pin(&Secret::new(" 0042 ")).unwrap(), "0042");
        assert_eq!(
            normalize_pin(&Secret::new("12a4")),
            Err(CredentialError::BadPin)
        );
        assert_eq!(
            normalize_pin(&Secret::new("123")),
            Err(CredentialError::BadPin)
        );
        for form in ["04:a2:19:ff", "04A219FF", "04 a2 19 ff", "04-A2-19-FF"] {
            assert_eq!(normalize_card(&Secret::new(form)).unwrap(), "04A219FF");
        }
        assert_eq!(
            normalize_card(&Secret::new("0/1")),
            Err(CredentialError::BadCard)
        );
        assert!(check_password(&Secret::new("short")).is_err());
        assert!(check_password(&Secret::new("long enough")).is_ok());
    }

    #[test]
    fn lookup_is_hmac_sha256_with_the_32_byte_key() {
        // The zero-padded block key must give exactly the HMAC of the
        // 32-byte key itself.
        let key = LookupKey::new([0x0b; 32]);
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&[0x0b; 32]).unwrap();
        mac.update(b"card\x001234");
        let expected: [u8; 32] = mac.finalize().into_bytes().into();
        assert_eq!(key.lookup(LookupKind::Card, "1234"), expected);
    }

    #[test]
    fn lookup_keys_depend_on_key_kind_and_value() {
        let a = LookupKey::new([1; 32]);
        let b = LookupKey::new([2; 32]);
        assert_eq!(
            a.lookup(LookupKind::Card, "1234"),
            a.lookup(LookupKind::Card, "1234")
        );
        assert_ne!(
            a.lookup(LookupKind::Card, "1234"),
            b.lookup(LookupKind::Card, "1234")
        );
        assert_ne!(
            a.lookup(LookupKind::Card, "1234"),
            a.lookup(LookupKind::PinOnly, "1234")
        );
    }

    #[test]
    fn hashes_verify_only_for_their_user_and_secret() {
        let phc = hash_for_user("alice", "correct horse").unwrap();
        assert!(phc.starts_with("$argon2id$"));
        assert!(!phc.contains("correct"));
        assert!(verify_for_user(&phc, "alice", "correct horse"));
        assert!(!verify_for_user(&phc, "alice", "correct horsE"));
        assert!(
            !verify_for_user(&phc, "bob", "correct horse"),
            "bound to the user"
        );
        assert!(!verify_for_user(
            "not a phc string",
            "alice",
            "correct horse"
        ));
    }

    #[test]
    fn the_reusing_checker_agrees_with_the_library() {
        let phc = hash_for_user("alice", "1234").unwrap();
        let mut checker = HashChecker::new();
        for _ in 0..2 {
            assert!(checker.verify_for_user(&phc, "alice", "1234"));
            assert!(!checker.verify_for_user(&phc, "alice", "1235"));
            assert!(
                !checker.verify_for_user(&phc, "bob", "1234"),
                "bound to the user"
            );
        }
        assert!(!checker.verify_for_user("not a phc", "alice", "1234"));
        assert!(verify_for_user(&phc, "alice", "1234"));
    }
}
