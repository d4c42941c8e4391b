//! Jobs whose document is arriving right now (a Send-Document streaming
//! in). The IPP server marks them; housekeeping's document timeout leaves
//! them alone. A registry of its own, so neither needs the other.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, PoisonError};

use crate::job::JobUuid;

/// The jobs receiving a document; cheap to clone (one shared set).
#[derive(Debug, Clone, Default)]
pub struct UploadRegistry {
    jobs: Arc<Mutex<HashSet<JobUuid>>>,
}

/// Marks a job as receiving its document until dropped.
#[derive(Debug)]
#[must_use = "the job is marked only while this lives"]
pub struct UploadMark {
    registry: UploadRegistry,
    uuid: JobUuid,
}

impl UploadRegistry {
    /// Marks `uuid` as receiving its document, until the mark is dropped.
    pub fn mark(&self, uuid: JobUuid) -> UploadMark {
        self.with(|jobs| jobs.insert(uuid));
        UploadMark {
            registry: self.clone(),
            uuid,
        }
    }

    /// Whether a document for `uuid` is arriving now.
    pub fn contains(&self, uuid: JobUuid) -> bool {
        self.with(|jobs| jobs.contains(&uuid))
    }

    fn with<T>(&self, f: impl FnOnce(&mut HashSet<JobUuid>) -> T) -> T {
        f(&mut self.jobs.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

impl Drop for UploadMark {
    fn drop(&mut self) {
        self.registry.with(|jobs| jobs.remove(&self.uuid));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_job_is_marked_while_its_mark_lives() {
        let registry = UploadRegistry::default();
        let uuid = JobUuid::new();
        let mark = registry.mark(uuid);
        assert!(registry.clone().contains(uuid));
        drop(mark);
        assert!(!registry.contains(uuid));
    }
}
