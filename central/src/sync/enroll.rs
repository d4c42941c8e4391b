//! Enrollment: a site with a one-time token sends its signing request and
//! receives its certificate, central's CA and the fleet key.

use std::time::Duration;

use sync_protocol::message::{EnrollRequest, Enrolled, Message, Refusal, RefusalCode};
use sync_protocol::pki::{EnrollmentToken, pem_fingerprint};
use sync_protocol::transport::{self, CLOSE_DONE};

use super::{Shared, refuse};
use crate::store::CentralStore;

/// How long an enrolling site has to send its request.
const REQUEST: Duration = Duration::from_secs(10);
/// How long an enrolled site has to read its certificate (a loaded site
/// may take longer than a refused one is given to read its refusal).
const ENROLLED_LINGER: Duration = Duration::from_secs(30);

pub(super) async fn run<S: CentralStore>(shared: &Shared<S>, connection: quinn::Connection) {
    let remote = connection.remote_address();
    let Ok((mut tx, mut rx)) = transport::accept_session(&connection, Default::default()).await
    else {
        return;
    };
    let deadline = tokio::time::Instant::now() + REQUEST;
    let request = loop {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Ok(Message::EnrollRequest(request))) => break request,
            // A newer site's message this revision does not know.
            Ok(Ok(Message::Unknown)) => continue,
            Ok(Ok(other)) => {
                let refusal = Refusal::new(
                    RefusalCode::UnexpectedMessage,
                    format!("{} is not an enrollment request", other.kind()),
                );
                return refuse(&connection, &mut tx, refusal).await;
            }
            Ok(Err(_)) | Err(_) => return,
        }
    };
    match decide(shared, &request).await {
        Ok(enrolled) => {
            tracing::info!(%remote, site = %enrolled.site, software = %request.software, "site enrolled");
            let _ = tx.send(&Message::Enrolled(enrolled)).await;
            let _ = tx.finish().await;
            // The token is used now: closing before the site has read its
            // certificate would leave it unenrolled with a spent token. The
            // site closes once it has read it; a site still silent after
            // ENROLLED_LINGER is gone.
            let _ = tokio::time::timeout(ENROLLED_LINGER, connection.closed()).await;
            connection.close(CLOSE_DONE.into(), b"enrolled");
        }
        Err(refusal) => {
            tracing::warn!(%remote, code = %refusal.code, "enrollment refused: {}", refusal.message);
            refuse(&connection, &mut tx, refusal).await;
        }
    }
}

async fn decide<S: CentralStore>(
    shared: &Shared<S>,
    request: &EnrollRequest,
) -> Result<Enrolled, Refusal> {
    let refused = |(code, message): (RefusalCode, &str)| Refusal::new(code, message);
    let unavailable = |e: crate::store::StoreError| {
        tracing::error!(error = %e, "enrollment: store");
        Refusal::new(
            RefusalCode::Unavailable,
            "central cannot enroll now; try later",
        )
    };
    let token = EnrollmentToken::parse(&request.token).ok_or_else(|| {
        Refusal::new(
            RefusalCode::BadToken,
            "this is not an enrollment token; copy the last line `central site add` printed",
        )
    })?;
    let secret = token.secret_hash();
    let site = shared
        .store
        .check_token(token.id.clone(), secret)
        .await
        .map_err(unavailable)?
        .map_err(|r| refused(r.refusal()))?;
    let certificate = shared
        .identity
        .authority
        .sign_site(
            &request.csr_pem,
            &site,
            i64::from(shared.config.sites.certificate_days),
        )
        .map_err(|e| {
            Refusal::new(
                RefusalCode::BadRequest,
                format!("the certificate signing request is unusable: {e}"),
            )
        })?;
    let fingerprint = pem_fingerprint(&certificate)
        .map_err(|e| Refusal::new(RefusalCode::Unavailable, format!("signing failed: {e}")))?;
    let site = shared
        .store
        .complete_enrollment(token.id, secret, fingerprint)
        .await
        .map_err(unavailable)?
        .map_err(|r| refused(r.refusal()))?;
    Ok(Enrolled {
        site,
        certificate_pem: certificate,
        ca_pem: shared.identity.authority.certificate_pem().to_owned(),
        fleet_key: hex::encode(shared.identity.fleet_key),
    })
}
