//! API errors: an HTTP status and a JSON body `{"error": {"code", "message"}}`
//! whose code a terminal can act on and whose message a person can read.

use bytes::Bytes;
use http::{StatusCode, header};
use http_body_util::Full;

use crate::http_server::Response;
use crate::store::StoreError;

/// An error answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Stable machine-readable code.
    pub code: &'static str,
    /// What happened and what to do.
    pub message: String,
    /// Seconds to wait before trying again (429, 503).
    pub retry_after: Option<u64>,
}

impl ApiError {
    /// An error with no retry hint.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
            retry_after: None,
        }
    }

    /// 400 with code `bad_request`.
    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    /// 404 with code `not_found`.
    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    /// 401: no live session.
    pub fn unauthorized(idle_secs: i64) -> ApiError {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            format!(
                "Log in first (POST /api/v1/sessions with your PIN, card or password). Sessions \
                 end after {idle_secs} s unused."
            ),
        )
    }

    /// The JSON response.
    pub fn response(&self) -> Response {
        let body = serde_json::json!({
            "error": { "code": self.code, "message": self.message }
        });
        let mut builder = http::Response::builder()
            .status(self.status)
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::CACHE_CONTROL, "no-store");
        if let Some(secs) = self.retry_after {
            builder = builder.header(header::RETRY_AFTER, secs);
        }
        if self.status == StatusCode::UNAUTHORIZED {
            builder = builder.header(header::WWW_AUTHENTICATE, "Bearer");
        }
        builder
            .body(Full::new(Bytes::from(body.to_string())))
            .unwrap_or_else(|_| http::Response::new(Full::new(Bytes::new())))
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound => ApiError::not_found("No such job."),
            StoreError::NotPossible(reason) => {
                ApiError::new(StatusCode::CONFLICT, "conflict", reason.0)
            }
            StoreError::DiskFull(_) => ApiError {
                retry_after: Some(60),
                ..ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "unavailable",
                    "The appliance's disk is full; ask your administrator.",
                )
            },
            other => {
                tracing::error!(error = %other, "API: store failure");
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "The appliance could not read or write its store; try again, and tell your \
                     administrator if it persists.",
                )
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_are_json_with_code_and_message() {
        let e = ApiError {
            retry_after: Some(30),
            ..ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "locked",
                "Too many wrong PINs.",
            )
        };
        let r = e.response();
        assert_eq!(r.status(), 429);
        assert_eq!(r.headers()[header::RETRY_AFTER], "30");
        assert_eq!(r.headers()[header::CONTENT_TYPE], "application/json");
        let store: ApiError = StoreError::NotFound.into();
        assert_eq!(
            (store.status, store.code),
            (StatusCode::NOT_FOUND, "not_found")
        );
    }
}
