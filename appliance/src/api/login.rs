//! Logging in at a printer: the request, the lockout reservation around
//! the check of the secret ([`crate::authn`]), and the session that results
//! (the login use case of [`ApiService`]).

use serde::Deserialize;

use http::StatusCode;

use super::ApiService;
use super::error::ApiError;
use super::reply::json;
use super::sessions::Session;
use crate::authn::lockout::{Refusal, ReservedAttempt, Subject};
use crate::authn::verifier::{Checked, Method};
use crate::credentials::Secret;
use crate::http_server::Response;
use crate::job::now_ms;
use crate::store::AuditEvent;

/// A login request as sent.
#[derive(Debug)]
pub(super) struct LoginRequest {
    /// The printer's id.
    pub(super) device: String,
    /// How the user proves who they are.
    pub(super) method: Method,
    /// The user name, when one is given (never empty).
    pub(super) user: Option<String>,
    /// The PIN, card number or password.
    pub(super) secret: Secret,
    /// The session goes into an HttpOnly cookie instead of the answer (the
    /// web app: no script ever holds the token).
    pub(super) cookie: bool,
}

/// Where a new session's token goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Delivery {
    /// In the answer, for `Authorization: Bearer`.
    #[default]
    Token,
    /// In a session cookie.
    Cookie,
}

/// Parses a login body. A card names its user by itself and takes no user
/// name: a second name could only be meant to steer the lockout to someone
/// else.
pub(super) fn parse_login(body: &[u8]) -> Result<LoginRequest, ApiError> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct LoginBody {
        device: String,
        method: Method,
        #[serde(default)]
        user: Option<String>,
        secret: String,
        #[serde(default)]
        session: Delivery,
    }
    let body: LoginBody = serde_json::from_slice(body).map_err(|e| {
        ApiError::bad_request(format!(
            "invalid login: {e}. Send {{\"device\", \"method\": \"pin\"|\"card\"|\"password\", \
             \"user\"?, \"secret\", \"session\"?: \"token\"|\"cookie\"}}."
        ))
    })?;
    let user = body.user.filter(|u| !u.is_empty());
    if body.method == Method::Card && user.is_some() {
        return Err(ApiError::bad_request(
            "a card login takes no user name: send {\"device\", \"method\": \"card\", \"secret\"}",
        ));
    }
    Ok(LoginRequest {
        device: body.device,
        method: body.method,
        user,
        secret: Secret::new(body.secret),
        cookie: body.session == Delivery::Cookie,
    })
}

/// The login use case: a user proves who they are at a printer.
impl ApiService {
    /// `same_origin`: the request came from a page of this server (its
    /// `Origin`), which a login into a cookie must.
    pub(super) async fn login(&self, body: &[u8], same_origin: bool) -> Result<Response, ApiError> {
        let body = parse_login(body)?;
        if body.cookie && !same_origin {
            return Err(super::cross_origin());
        }
        let cookie = body.cookie;
        let Some(printer) = self.printers.get(&body.device) else {
            return Err(ApiError::new(
                StatusCode::NOT_FOUND,
                "unknown_device",
                format!(
                    "No printer {:?} at this site; GET /api/v1/devices lists them.",
                    body.device
                ),
            ));
        };
        let device = printer.id.clone();
        let user = body.user.as_deref();
        let secret = body.secret;
        let method = body.method.keyword();

        let attempt = match self.with_lockout(|l| l.begin(user, &device, now_ms())) {
            Ok(attempt) => ReservedAttempt::new(&self.lockout, attempt),
            Err(refusal) => {
                self.count_login(method, "locked");
                tracing::warn!(user = user.unwrap_or("-"), %device, method, "login refused: locked out or busy");
                let why = match refusal {
                    Refusal::Locked(_) => "locked out",
                    Refusal::Busy(_) => "too many attempts being checked",
                };
                self.audit(AuditEvent::now(
                    "login-refused",
                    user,
                    Some(&device),
                    format!("method={method}; {why}"),
                ))
                .await?;
                return Err(refusal_error(refusal));
            }
        };

        let checked = match self.verifier.check(body.method, user, &secret).await {
            Ok(checked) => checked,
            Err(e) => {
                attempt.withdrawn();
                return Err(e.into());
            }
        };
        match checked {
            Checked::Unusable(message) => {
                attempt.withdrawn();
                Err(ApiError::bad_request(message))
            }
            Checked::Invalid(reason) => {
                let lock = attempt.failed(now_ms());
                self.count_login(method, if lock.is_some() { "locked" } else { "invalid" });
                let detail = match lock {
                    Some(l) => format!(
                        "method={method}; {reason}; {} locked for {} s",
                        subject_name(l.subject),
                        l.retry_after_secs
                    ),
                    None => format!("method={method}; {reason}"),
                };
                tracing::warn!(
                    user = user.unwrap_or("-"),
                    %device,
                    method,
                    reason,
                    locked_secs = lock.map(|l| l.retry_after_secs),
                    "login failed"
                );
                self.audit(AuditEvent::now("login-failed", user, Some(&device), detail))
                    .await?;
                match lock {
                    Some(locked) => Err(refusal_error(Refusal::Locked(locked))),
                    None => Err(ApiError::new(
                        StatusCode::UNAUTHORIZED,
                        "invalid_credentials",
                        "Wrong PIN, card or password. Try again.",
                    )),
                }
            }
            Checked::Valid(found) => {
                // The lock that counts is the one of the user the secret
                // belongs to, whatever the request named.
                if let Err(locked) = attempt.succeeded(&found.id, now_ms()) {
                    self.count_login(method, "locked");
                    self.audit(AuditEvent::now(
                        "login-refused",
                        Some(&found.id),
                        Some(&device),
                        format!("method={method}; locked out"),
                    ))
                    .await?;
                    return Err(refusal_error(Refusal::Locked(locked)));
                }
                self.count_login(method, "ok");
                let (user_id, display_name) = (found.id.clone(), found.display_name.clone());
                let session = Session::new(found, device.clone(), now_ms());
                let (token, idle) = {
                    let mut sessions = self.lock_sessions()?;
                    let token = sessions.create(session).map_err(|e| {
                        ApiError::new(
                            StatusCode::INTERNAL_SERVER_ERROR,
                            "internal",
                            format!("no randomness for a session token: {e}"),
                        )
                    })?;
                    (token, sessions.idle_secs())
                };
                self.audit(AuditEvent::now(
                    "login",
                    Some(&user_id),
                    Some(&device),
                    format!("method={method}"),
                ))
                .await?;
                tracing::info!(user = %user_id, %device, method, "login");
                if let (Some(roaming), Some(max)) = (&self.roaming, self.prefetch_max_bytes) {
                    roaming.prefetch_for(user_id.clone(), max);
                }
                let mut answer = serde_json::json!({
                    "user": { "id": user_id, "display_name": display_name },
                    "device": device,
                    "idle_timeout_secs": idle,
                });
                if !cookie {
                    answer["token"] = serde_json::Value::String(token.clone());
                }
                let mut response = json(StatusCode::CREATED, &answer);
                if cookie {
                    response.headers_mut().insert(
                        http::header::SET_COOKIE,
                        super::web::cookie::set(&token, self.secure),
                    );
                }
                Ok(response)
            }
        }
    }
}

fn subject_name(subject: Subject) -> &'static str {
    match subject {
        Subject::User => "user",
        Subject::Device => "device",
    }
}

fn refusal_error(refusal: Refusal) -> ApiError {
    let whom = |subject| match subject {
        Subject::User => "this account",
        Subject::Device => "this printer",
    };
    let (code, retry_after, message) = match refusal {
        Refusal::Locked(locked) => (
            "locked",
            locked.retry_after_secs,
            format!(
                "Too many wrong attempts: logins for {} are paused. Try again in {} s.",
                whom(locked.subject),
                locked.retry_after_secs
            ),
        ),
        Refusal::Busy(subject) => (
            "busy",
            1,
            format!(
                "Other logins for {} are being checked. Try again in a moment.",
                whom(subject)
            ),
        ),
    };
    ApiError {
        retry_after: Some(retry_after),
        ..ApiError::new(StatusCode::TOO_MANY_REQUESTS, code, message)
    }
}
