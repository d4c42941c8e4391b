//! Job roaming at central: answers a site's question about its user's jobs
//! elsewhere from the job index, and relays claims, fetches, reports and
//! document blocks between the site that wants a job and the site that
//! holds it (`sync_protocol::roaming` describes the exchange).
//!
//! Central keeps no state for a transfer: every message names the site it
//! is for, and central writes the sender's authenticated name into it
//! before passing it on, so a site can neither pose as another nor need
//! central to remember anything across its restart. A block is copied
//! from the origin's stream to a new stream to the claimant through a
//! bounded buffer, under one of `sync.relay_streams` permits: central's
//! memory for transfers does not grow with document size or with the
//! number of transfers.

use std::sync::Arc;
use std::time::Duration;

use sync_protocol::message::Message;
use sync_protocol::roaming::{self, RemoteJob, RemoteJobs, RemoteJobsRequest, Route};
use sync_protocol::transfer::BlockHeader;
use tokio::sync::Semaphore;

use super::Shared;
use super::registry::Registry;
use crate::store::CentralStore;

/// The largest piece of a block held at once while copying it.
const COPY_CHUNK: usize = 64 * 1024;
/// A block's relay gives up after this long (a stalled peer frees its permit).
const BLOCK_TIME: Duration = Duration::from_secs(120);
/// Stream error code: central could not pass the block on.
const NOT_RELAYED: u32 = 1;

/// A roaming message from `site`; what to answer it, if anything.
pub(super) async fn from_site<S: CentralStore>(
    shared: &Shared<S>,
    site: &str,
    mut message: Message,
) -> Option<Message> {
    if let Message::RemoteJobsRequest(request) = message {
        return Some(remote_jobs(shared, site, request).await);
    }
    let Some(to) = roaming::address(&mut message, site) else {
        tracing::debug!(%site, kind = message.kind(), "roaming: a message for sites, from a site; ignored");
        return None;
    };
    if to == site {
        return roaming::undeliverable(&message, "the job is at this site already".into());
    }
    let fallback = roaming::undeliverable(&message, unreachable(&to));
    if deliver(&shared.registry, &to, message) {
        None
    } else {
        fallback
    }
}

fn unreachable(site: &str) -> String {
    format!("site {site} is not connected to central now; its jobs cannot be fetched until it is")
}

/// Passes `message` to the newest roaming session of `site`; false when
/// there is none or it is too far behind to take more.
fn deliver(registry: &Registry, site: &str, message: Message) -> bool {
    match registry.link(site) {
        Some(link) => link.inbox.try_send(message).is_ok(),
        None => false,
    }
}

async fn remote_jobs<S: CentralStore>(
    shared: &Shared<S>,
    site: &str,
    request: RemoteJobsRequest,
) -> Message {
    let (jobs, unavailable) = match shared.store.jobs_of(request.user).await {
        Ok(indexed) => {
            let mut jobs: Vec<RemoteJob> = indexed
                .into_iter()
                .filter(|j| j.site != site)
                .map(|j| {
                    let available = shared.registry.link(&j.site).is_some();
                    RemoteJob {
                        reason: (!available).then(|| unreachable(&j.site)),
                        uuid: j.uuid,
                        site: j.site,
                        name: j.name,
                        pages: j.pages,
                        size: j.size,
                        submitted_ms: j.submitted_ms,
                        state: j.state,
                        available,
                    }
                })
                .collect();
            jobs.sort_by(|a, b| (a.submitted_ms, &a.uuid).cmp(&(b.submitted_ms, &b.uuid)));
            (jobs, None)
        }
        Err(e) => {
            tracing::error!(error = %e, "roaming: cannot read the job index");
            (
                Vec::new(),
                Some("central cannot read its job index now".to_owned()),
            )
        }
    };
    Message::RemoteJobs(RemoteJobs {
        request: request.request,
        jobs,
        unavailable,
    })
}

/// Relays one block stream opened by `from`: reads its route, opens a
/// stream to the claimant, copies the block across. Gives up (resetting
/// what it can) when the claimant is not connected, a permit does not come,
/// or the copy stalls; the claimant asks again.
pub(super) async fn block(
    registry: Arc<Registry>,
    permits: Arc<Semaphore>,
    from: String,
    mut stream: quinn::RecvStream,
) {
    let relayed = tokio::time::timeout(BLOCK_TIME, async {
        let mut len = [0u8; 1];
        stream
            .read_exact(&mut len)
            .await
            .map_err(|e| e.to_string())?;
        let mut name = vec![0u8; usize::from(len[0])];
        stream
            .read_exact(&mut name)
            .await
            .map_err(|e| e.to_string())?;
        let route = Route::decode(&name).ok_or("a block route without a site name")?;
        let link = registry
            .link(&route.claimant)
            .ok_or_else(|| format!("site {} is not connected", route.claimant))?;
        let _permit = permits.acquire().await.map_err(|e| e.to_string())?;
        // The header says which block: the same priority on the way on.
        let mut head = [0u8; BlockHeader::LEN];
        stream
            .read_exact(&mut head)
            .await
            .map_err(|e| e.to_string())?;
        let header = BlockHeader::decode(&head, u32::MAX).map_err(|e| e.to_string())?;
        let mut out = link
            .connection
            .open_uni()
            .await
            .map_err(|e| e.to_string())?;
        out.set_priority(header.priority())
            .map_err(|e| e.to_string())?;
        out.write_all(&head).await.map_err(|e| e.to_string())?;
        while let Some(chunk) = stream
            .read_chunk(COPY_CHUNK, true)
            .await
            .map_err(|e| e.to_string())?
        {
            out.write_all(&chunk.bytes)
                .await
                .map_err(|e| e.to_string())?;
        }
        out.finish().map_err(|e| e.to_string())?;
        Ok::<_, String>(())
    })
    .await;
    let why = match relayed {
        Ok(Ok(())) => return,
        Ok(Err(why)) => why,
        Err(_) => format!("no progress within {} s", BLOCK_TIME.as_secs()),
    };
    tracing::debug!(%from, "roaming: a block was not relayed: {why}");
    let _ = stream.stop(NOT_RELAYED.into());
}
