//! One raw socket connection: every byte until the sender closes is one
//! job's document, stored as it came (PJL header included, since the
//! printer wants it). The owner is read from the PJL header, else from
//! `[raw] hosts`; a job with neither is refused and logged, since nobody
//! could release it. The protocol has no way to answer, so every outcome
//! is logged.

use std::io::Cursor;
use std::net::SocketAddr;

use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::net::TcpStream;

use super::pjl;
use crate::config::RawConfig;
use crate::ipp::service::{ForeignJob, IppService};
use crate::job::JobUuid;

pub(super) async fn serve(
    mut stream: TcpStream,
    peer: SocketAddr,
    service: &IppService,
    config: &RawConfig,
) {
    let idle = service.limits.idle_timeout();
    let (prefix, header) = match read_header(&mut stream, idle).await {
        Ok(Some(read)) => read,
        Ok(None) => {
            tracing::debug!(%peer, "raw connection closed without data");
            return;
        }
        Err(e) => {
            tracing::warn!(%peer, error = %e, "raw job dropped while its header arrived");
            return;
        }
    };
    let owner = header
        .user
        .clone()
        .or_else(|| config.hosts.get(&peer.ip()).cloned());
    let Some(owner) = owner else {
        tracing::warn!(%peer, "raw job refused: it names no PJL USERNAME and [raw] hosts maps no owner to its address; nothing was stored");
        return;
    };
    let Some(queue) = config
        .queue
        .clone()
        .or_else(|| service.queues.default_queue().map(|q| q.name.clone()))
    else {
        tracing::warn!(%peer, "raw job refused: no queue to put it in");
        return;
    };
    let job = ForeignJob {
        uuid: JobUuid::new(),
        queue,
        owner,
        name: header.job_name.unwrap_or_else(|| "Untitled".to_owned()),
        document_name: None,
        template: Vec::new(),
        client: Some(peer.ip()),
        by: "raw",
    };
    let mut body = Cursor::new(prefix).chain(stream);
    if let Err(e) = service.submit(job, &mut body).await {
        tracing::warn!(%peer, error = %e, "raw job refused; nothing was stored");
    }
}

/// Reads until the PJL header (if any) is decided; returns the bytes read
/// and the header, or `None` for a connection that sent nothing.
async fn read_header<R: AsyncRead + Unpin>(
    stream: &mut R,
    idle: std::time::Duration,
) -> std::io::Result<Option<(Vec<u8>, pjl::PjlHeader)>> {
    let mut prefix = Vec::with_capacity(4096);
    let mut ended = false;
    loop {
        let finished = ended || prefix.len() >= pjl::HEADER_LIMIT;
        if let Some(header) = pjl::scan(&prefix, finished) {
            return Ok((!(ended && prefix.is_empty())).then_some((prefix, header)));
        }
        let room = pjl::HEADER_LIMIT - prefix.len();
        let read =
            tokio::time::timeout(idle, (&mut *stream).take(room as u64).read_buf(&mut prefix))
                .await
                .map_err(|_| {
                    std::io::Error::new(std::io::ErrorKind::TimedOut, "the sender went quiet")
                })??;
        ended = read == 0;
    }
}
