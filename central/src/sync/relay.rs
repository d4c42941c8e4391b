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
//!
//! A site whose session is on another node sharing the database is reached
//! through that node (`nodes`): the message or block crosses one node link
//! and is passed on there as here.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use sync_protocol::message::Message;
use sync_protocol::roaming::{self, RemoteJob, RemoteJobs, RemoteJobsRequest, Route};
use sync_protocol::transfer::BlockHeader;

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
    if shared.registry.link(&to).is_some() {
        return if deliver(&shared.registry, &to, message) {
            None
        } else {
            fallback
        };
    }
    match other_node(shared, &to).await {
        Some(node) => {
            shared
                .nodes
                .forward(&node, to, message, site.to_owned(), fallback);
            None
        }
        None => fallback,
    }
}

/// The other live node holding `site`'s session, if one does.
async fn other_node<S: CentralStore>(shared: &Shared<S>, site: &str) -> Option<String> {
    match shared.store.sessions_of(vec![site.to_owned()]).await {
        Ok(mut nodes) => nodes
            .remove(site)
            .filter(|node| *node != shared.nodes.address),
        Err(e) => {
            tracing::warn!(error = %e, "roaming: cannot read which node holds a site's session");
            None
        }
    }
}

fn unreachable(site: &str) -> String {
    format!("site {site} is not connected to central now; its jobs cannot be fetched until it is")
}

/// Passes `message` to the newest roaming session of `site` on this node;
/// false when there is none or it is too far behind to take more.
pub(super) fn deliver(registry: &Registry, site: &str, message: Message) -> bool {
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
            let indexed: Vec<_> = indexed.into_iter().filter(|j| j.site != site).collect();
            let reachable = reachable(shared, indexed.iter().map(|j| &j.site)).await;
            let mut jobs: Vec<RemoteJob> = indexed
                .into_iter()
                .map(|j| {
                    let available = reachable.contains(&j.site);
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

/// The sites among `sites` whose session is open on this node or another
/// live one.
async fn reachable<'a, S: CentralStore>(
    shared: &Shared<S>,
    sites: impl Iterator<Item = &'a String>,
) -> HashSet<String> {
    let (mut here, mut elsewhere) = (HashSet::new(), HashSet::new());
    for site in sites {
        if shared.registry.link(site).is_some() {
            here.insert(site.clone());
        } else {
            elsewhere.insert(site.clone());
        }
    }
    if !elsewhere.is_empty() {
        match shared
            .store
            .sessions_of(elsewhere.into_iter().collect())
            .await
        {
            Ok(nodes) => here.extend(
                nodes
                    .into_iter()
                    .filter(|(_, node)| *node != shared.nodes.address)
                    .map(|(site, _)| site),
            ),
            Err(e) => {
                tracing::warn!(error = %e, "roaming: cannot read which node holds which site")
            }
        }
    }
    here
}

/// Where a block stream came from.
#[derive(Debug)]
pub(super) enum Hop {
    /// The origin site's own session, by site name.
    Site(String),
    /// Another node, by address, passing on an origin's block.
    Node(String),
}

impl std::fmt::Display for Hop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Hop::Site(site) => write!(f, "site {site}"),
            Hop::Node(node) => write!(f, "node {node}"),
        }
    }
}

/// Where a block goes next.
enum Next {
    /// The claimant's session on this node.
    Claimant(quinn::Connection),
    /// The other node holding the claimant's session, by address.
    Node(String),
}

/// Reads the route that begins a block stream (or a node's message).
pub(super) async fn read_route(stream: &mut quinn::RecvStream) -> Result<Route, String> {
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
    Route::decode(&name).ok_or_else(|| "a route without a site name".to_owned())
}

/// Relays one block stream that came `from` a site or a node: reads its
/// route, opens a stream to the claimant (through its node when its session
/// is on another, and only when the block came from a site), copies the
/// block across. Gives up (resetting what it can) when the claimant is not
/// connected, a permit does not come, or the copy stalls; the claimant
/// asks again.
pub(super) async fn block<S: CentralStore>(
    shared: Arc<Shared<S>>,
    from: Hop,
    mut stream: quinn::RecvStream,
) {
    let relayed = tokio::time::timeout(BLOCK_TIME, async {
        let route = read_route(&mut stream).await?;
        let next = match (shared.registry.link(&route.claimant), &from) {
            (Some(link), _) => Next::Claimant(link.connection),
            (None, Hop::Site(_)) => match other_node(&shared, &route.claimant).await {
                Some(node) => Next::Node(node),
                None => return Err(format!("site {} is not connected", route.claimant)),
            },
            (None, Hop::Node(_)) => {
                return Err(format!("site {} is not connected here", route.claimant));
            }
        };
        let _permit = shared.relay.acquire().await.map_err(|e| e.to_string())?;
        // The header says which block: the same priority on the way on.
        let mut head = [0u8; BlockHeader::LEN];
        stream
            .read_exact(&mut head)
            .await
            .map_err(|e| e.to_string())?;
        let header = BlockHeader::decode(&head, u32::MAX).map_err(|e| e.to_string())?;
        let mut out = match next {
            Next::Claimant(connection) => connection.open_uni().await.map_err(|e| e.to_string())?,
            Next::Node(node) => shared.nodes.block_stream(&node, &route.claimant).await?,
        };
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
