//! Protocol revisions and their negotiation.
//!
//! The ALPN names the protocol family; an incompatible change gets a new
//! ALPN, never a new revision. Within a family a revision only adds
//! (fields with defaults, message kinds a peer may skip), so any two
//! revisions in each other's ranges speak the lower one.

use crate::message::{Refusal, RefusalCode};

/// ALPN of sync sessions (mutual TLS).
pub const ALPN_SYNC: &[u8] = b"printfleet-sync/1";
/// ALPN of enrollment (the site has no certificate yet).
pub const ALPN_ENROLL: &[u8] = b"printfleet-enroll/1";
/// ALPN of the link between two central nodes sharing one database (mutual
/// TLS with their server certificates): roaming messages and document
/// blocks for a site whose session is on the other node.
pub const ALPN_NODE: &[u8] = b"printfleet-node/1";
/// The newest revision this build speaks.
pub const REVISION: u32 = 2;
/// The first revision with job roaming (`crate::roaming`): neither end
/// sends roaming messages to a peer speaking less.
pub const ROAMING_REVISION: u32 = 2;
/// The oldest revision this build still speaks.
pub const MIN_REVISION: u32 = 1;

/// A range of revisions one end speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Revisions {
    /// Oldest.
    pub min: u32,
    /// Newest.
    pub max: u32,
}

impl Revisions {
    /// What this build speaks.
    pub const OURS: Revisions = Revisions {
        min: MIN_REVISION,
        max: REVISION,
    };

    /// The revision two ends speak, or why there is none.
    pub fn negotiate(self, theirs: Revisions) -> Result<u32, Refusal> {
        let agreed = self.max.min(theirs.max);
        if agreed < self.min.max(theirs.min) || theirs.min > theirs.max {
            return Err(Refusal::new(
                RefusalCode::UnsupportedRevision,
                format!(
                    "no protocol revision in common: this end speaks {}..={}, the peer {}..={}; \
                     upgrade the older one",
                    self.min, self.max, theirs.min, theirs.max
                ),
            ));
        }
        Ok(agreed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(min: u32, max: u32) -> Revisions {
        Revisions { min, max }
    }

    #[test]
    fn the_lower_common_revision_is_spoken() {
        assert_eq!(r(1, 1).negotiate(r(1, 2)), Ok(1));
        assert_eq!(r(1, 3).negotiate(r(2, 5)), Ok(3));
        assert_eq!(r(2, 3).negotiate(r(1, 2)), Ok(2));
    }

    #[test]
    fn disjoint_ranges_are_refused_saying_both() {
        let e = r(1, 1).negotiate(r(2, 3)).unwrap_err();
        assert_eq!(e.code, RefusalCode::UnsupportedRevision);
        assert!(
            e.message.contains("1..=1") && e.message.contains("2..=3"),
            "{e}"
        );
        assert!(r(1, 5).negotiate(r(4, 2)).is_err());
    }
}
