//! Every way an IPP request can fail, and the one place each maps to its
//! IPP status code (RFC 8011 section 13.1).

use ipp::model::StatusCode;
use ipp::prelude::IppAttribute;

use crate::store::StoreError;

/// A refused or failed IPP request.
#[derive(Debug, thiserror::Error)]
pub enum IppError {
    /// Malformed, truncated or incomplete request.
    #[error("{0}")]
    BadRequest(String),
    /// IPP version other than 1.x or 2.x.
    #[error("IPP version {0}.{1} is not supported; use 1.1 or 2.0")]
    VersionNotSupported(u8, u8),
    /// Operation code the appliance does not implement.
    #[error("operation 0x{0:04x} is not supported")]
    OperationNotSupported(i16),
    /// `attributes-charset` other than UTF-8 / US-ASCII.
    #[error("charset {0:?} is not supported; use utf-8")]
    CharsetNotSupported(String),
    /// Queue or job does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The operation needs an authenticated user and the request proves none
    /// (answered with HTTP 401 and a challenge).
    #[error("{0}")]
    NotAuthenticated(String),
    /// Authentication is refused for now (locked out; HTTP 403).
    #[error("{0}")]
    Forbidden(String),
    /// The requesting user may not act on this job.
    #[error("{0}")]
    NotAuthorized(String),
    /// The request is valid but the job's state forbids it.
    #[error("{0}")]
    NotPossible(String),
    /// Not possible for the attribute values named (answered in the
    /// unsupported-attributes group, as Cancel-My-Jobs' `job-ids` asks).
    #[error("{0}")]
    NotPossibleFor(String, Vec<IppAttribute>),
    /// Document larger than `ipp.max_document_bytes`, or attributes larger
    /// than `ipp.max_attribute_bytes`.
    #[error("{0}")]
    TooLarge(String),
    /// `document-format` not accepted.
    #[error("document format {0:?} is not supported")]
    FormatNotSupported(String),
    /// The document's bytes do not match its declared format.
    #[error("{0}")]
    FormatError(String),
    /// A `compression` this appliance does not take.
    #[error("compression {0:?} is not supported; send documents as none, deflate or gzip")]
    CompressionNotSupported(String),
    /// The document did not decompress as its `compression` said.
    #[error("the document is not valid {0}")]
    CompressionError(String),
    /// Attributes or values not supported, with `ipp-attribute-fidelity` true.
    #[error("some attributes or values are not supported")]
    AttributesNotSupported(Vec<IppAttribute>),
    /// Send-Document for a job that already has its document.
    #[error("this appliance takes one document per job")]
    MultipleDocuments,
    /// The client went silent longer than the idle timeout.
    #[error("the client sent nothing for {0} s; request abandoned")]
    Timeout(u64),
    /// The client sent its document slower than `ipp.min_bytes_per_sec`.
    #[error("{0}")]
    TooSlow(String),
    /// The resources for taking a document stayed taken by others longer
    /// than a client should wait.
    #[error("the appliance is busy taking other documents; try again in a moment")]
    Busy,
    /// The disk holding the spool is full.
    #[error(
        "the appliance's disk is full; the job was not stored (ask an administrator to free space)"
    )]
    DiskFull,
    /// The store failed for another reason.
    #[error("internal error: {0}")]
    Internal(String),
}

impl IppError {
    /// The status code answered for this error.
    pub fn status(&self) -> StatusCode {
        match self {
            IppError::BadRequest(_) => StatusCode::ClientErrorBadRequest,
            IppError::VersionNotSupported(..) => StatusCode::ServerErrorVersionNotSupported,
            IppError::OperationNotSupported(_) => StatusCode::ServerErrorOperationNotSupported,
            IppError::CharsetNotSupported(_) => StatusCode::ClientErrorCharsetNotSupported,
            IppError::NotFound(_) => StatusCode::ClientErrorNotFound,
            IppError::NotAuthenticated(_) => StatusCode::ClientErrorNotAuthenticated,
            IppError::Forbidden(_) => StatusCode::ClientErrorForbidden,
            IppError::NotAuthorized(_) => StatusCode::ClientErrorNotAuthorized,
            IppError::NotPossible(_) | IppError::NotPossibleFor(..) => {
                StatusCode::ClientErrorNotPossible
            }
            IppError::TooLarge(_) => StatusCode::ClientErrorRequestEntityTooLong,
            IppError::FormatNotSupported(_) => StatusCode::ClientErrorDocumentFormatNotSupported,
            IppError::FormatError(_) => StatusCode::ClientErrorDocumentFormatError,
            IppError::CompressionNotSupported(_) => StatusCode::ClientErrorCompressionNotSupported,
            IppError::CompressionError(_) => StatusCode::ClientErrorCompressionError,
            IppError::AttributesNotSupported(_) => {
                StatusCode::ClientErrorAttributesOrValuesNotSupported
            }
            IppError::MultipleDocuments => StatusCode::ServerErrorMultipleDocumentJobsNotSupported,
            IppError::Timeout(_) | IppError::TooSlow(_) => StatusCode::ClientErrorTimeout,
            IppError::Busy => StatusCode::ServerErrorBusy,
            IppError::DiskFull => StatusCode::ServerErrorTemporaryError,
            IppError::Internal(_) => StatusCode::ServerErrorInternalError,
        }
    }
}

impl From<StoreError> for IppError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound => IppError::NotFound("job not found".into()),
            StoreError::NotPossible(reason) => IppError::NotPossible(reason.0),
            StoreError::DiskFull(_) => IppError::DiskFull,
            other => IppError::Internal(other.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::job::NotPossible;

    #[test]
    fn store_errors_map_to_protocol_statuses() {
        assert_eq!(
            IppError::from(StoreError::NotFound).status(),
            StatusCode::ClientErrorNotFound
        );
        assert_eq!(
            IppError::from(StoreError::NotPossible(NotPossible("x".into()))).status(),
            StatusCode::ClientErrorNotPossible
        );
        let full = IppError::from(StoreError::DiskFull("ENOSPC".into()));
        assert_eq!(full.status(), StatusCode::ServerErrorTemporaryError);
        assert!(full.to_string().contains("disk is full"));
    }

    #[test]
    fn request_entity_too_large_is_0x0408() {
        assert_eq!(IppError::TooLarge("x".into()).status() as u16, 0x0408);
    }
}
