//! Links between central nodes sharing one database. A roaming message or
//! a document block for a site whose session is on another node goes to
//! that node over QUIC, and that node passes it to its site. Each node
//! proves itself with its server certificate, which the receiving node
//! finds among the live nodes the database lists; which node holds a
//! site's session is the database's answer too (`store::nodes`), so a node
//! keeps nothing another needs.
//!
//! On a link, a bidirectional stream carries one message: the site's route
//! (as on a block stream), then the message's frame; the receiving node
//! answers one byte, whether the site's session there took it. A
//! unidirectional stream carries one block: the route, then the block as
//! the origin sent it. A node passes on only to its own sites, never to a
//! third node, so nothing loops. Messages for one node go one at a time,
//! in order, through a bounded queue: a node that does not answer holds up
//! only what is for its sites, and what cannot be queued or delivered is
//! answered to its sender as undeliverable, as for a site not connected.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sync_protocol::frame::{FrameCodec, MAX_FRAME, decode_payload};
use sync_protocol::message::Message;
use sync_protocol::pki::CENTRAL_NAME;
use sync_protocol::roaming::Route;
use tokio::sync::mpsc;

use super::Shared;
use super::registry::Registry;
use super::relay::{self, Hop};
use crate::store::CentralStore;

/// How long a link to another node may take to open.
const CONNECT: Duration = Duration::from_secs(3);
/// How long a message may take to reach another node and be answered.
const FORWARD: Duration = Duration::from_secs(5);
/// Messages queued for one node: beyond this its sites' messages are
/// answered as undeliverable at once (their senders ask again).
const QUEUE: usize = 256;
/// The answer byte: the site's session took the message.
const TAKEN: u8 = 1;
/// The answer byte: it did not (no session, or one too far behind).
const NOT_TAKEN: u8 = 0;

/// A message on its way to a site on another node.
struct Forward {
    /// The site it is for.
    to: String,
    /// The message.
    message: Message,
    /// The site that sent it, and what to tell it if it is not delivered.
    sender: String,
    undeliverable: Option<Message>,
}

/// This node's links to the others.
pub struct Nodes {
    /// This node's address: its name in the database.
    pub address: String,
    endpoint: quinn::Endpoint,
    client: quinn::ClientConfig,
    registry: Arc<Registry>,
    links: Mutex<HashMap<String, quinn::Connection>>,
    queues: Mutex<HashMap<String, mpsc::Sender<Forward>>>,
}

impl std::fmt::Debug for Nodes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Nodes")
            .field("address", &self.address)
            .finish_non_exhaustive()
    }
}

impl Nodes {
    /// Links from the node at `address`, dialed from its own `endpoint`
    /// with `client` (`transport::node_client_config`); undelivered
    /// messages are answered to their senders through `registry`.
    pub fn new(
        address: String,
        endpoint: quinn::Endpoint,
        client: quinn::ClientConfig,
        registry: Arc<Registry>,
    ) -> Nodes {
        Nodes {
            address,
            endpoint,
            client,
            registry,
            links: Mutex::default(),
            queues: Mutex::default(),
        }
    }

    /// Queues `message` from `sender` for `to`, whose session is on the
    /// node at `node`; if it cannot be delivered, `undeliverable` goes
    /// back to `sender`.
    pub(super) fn forward(
        self: &Arc<Self>,
        node: &str,
        to: String,
        message: Message,
        sender: String,
        undeliverable: Option<Message>,
    ) {
        let queue = match self.queues.lock() {
            Ok(mut queues) => queues
                .entry(node.to_owned())
                .or_insert_with(|| {
                    let (tx, rx) = mpsc::channel(QUEUE);
                    tokio::spawn(self.clone().send_in_order(node.to_owned(), rx));
                    tx
                })
                .clone(),
            Err(_) => return,
        };
        let forward = Forward {
            to,
            message,
            sender,
            undeliverable,
        };
        if let Err(full) = queue.try_send(forward) {
            self.not_delivered(full.into_inner(), "its node is not keeping up");
        }
    }

    /// Sends what is queued for `node`, one message at a time.
    async fn send_in_order(self: Arc<Self>, node: String, mut queue: mpsc::Receiver<Forward>) {
        while let Some(forward) = queue.recv().await {
            let sent = tokio::time::timeout(FORWARD, self.send(&node, &forward)).await;
            match sent {
                Ok(Ok(true)) => {}
                Ok(Ok(false)) => self.not_delivered(forward, "its session there is gone"),
                Ok(Err(e)) => {
                    tracing::debug!(%node, error = %e, "roaming: a message for another node was not sent");
                    self.not_delivered(forward, "its node cannot be reached");
                }
                Err(_) => self.not_delivered(forward, "its node did not answer"),
            }
        }
    }

    async fn send(&self, node: &str, forward: &Forward) -> Result<bool, String> {
        let route = route(&forward.to)?;
        let frame = FrameCodec::default()
            .encode_to_vec(&forward.message)
            .map_err(|e| e.to_string())?;
        let connection = self.link(node).await?;
        let (mut send, mut recv) = connection.open_bi().await.map_err(|e| e.to_string())?;
        send.write_all(&route).await.map_err(|e| e.to_string())?;
        send.write_all(&frame).await.map_err(|e| e.to_string())?;
        send.finish().map_err(|e| e.to_string())?;
        let mut answer = [NOT_TAKEN];
        recv.read_exact(&mut answer)
            .await
            .map_err(|e| e.to_string())?;
        Ok(answer[0] == TAKEN)
    }

    fn not_delivered(&self, forward: Forward, why: &str) {
        tracing::debug!(to = %forward.to, kind = forward.message.kind(), "roaming: not delivered: {why}");
        if let Some(answer) = forward.undeliverable {
            relay::deliver(&self.registry, &forward.sender, answer);
        }
    }

    /// A stream to the node at `node` carrying a block for `site`, its
    /// route written.
    pub(super) async fn block_stream(
        &self,
        node: &str,
        site: &str,
    ) -> Result<quinn::SendStream, String> {
        let route = route(site)?;
        let connection = self.link(node).await?;
        let mut stream = connection.open_uni().await.map_err(|e| e.to_string())?;
        stream.write_all(&route).await.map_err(|e| e.to_string())?;
        Ok(stream)
    }

    /// The open link to the node at `node`, dialed if there is none.
    async fn link(&self, node: &str) -> Result<quinn::Connection, String> {
        let open = self
            .links
            .lock()
            .ok()
            .and_then(|links| links.get(node).cloned())
            .filter(|c| c.close_reason().is_none());
        if let Some(connection) = open {
            return Ok(connection);
        }
        let addr: SocketAddr = node
            .parse()
            .map_err(|_| format!("node address {node:?} is not an address and port"))?;
        let connecting = self
            .endpoint
            .connect_with(self.client.clone(), addr, CENTRAL_NAME)
            .map_err(|e| e.to_string())?;
        let connection = tokio::time::timeout(CONNECT, connecting)
            .await
            .map_err(|_| format!("node {node} did not answer within {} s", CONNECT.as_secs()))?
            .map_err(|e| format!("node {node}: {e}"))?;
        if let Ok(mut links) = self.links.lock() {
            links.insert(node.to_owned(), connection.clone());
        }
        Ok(connection)
    }
}

fn route(site: &str) -> Result<Vec<u8>, String> {
    Route {
        claimant: site.to_owned(),
    }
    .encode()
    .ok_or_else(|| format!("site name {site:?} too long to route"))
}

/// Serves a link the node at `node` opened: messages and blocks for this
/// node's sites, until it closes.
pub(super) async fn serve<S: CentralStore>(
    shared: Arc<Shared<S>>,
    connection: quinn::Connection,
    node: String,
) {
    tracing::info!(%node, "node link open");
    let why = loop {
        tokio::select! {
            stream = connection.accept_bi() => match stream {
                Ok((send, recv)) => {
                    tokio::spawn(take_message(shared.registry.clone(), send, recv));
                }
                Err(e) => break e,
            },
            stream = connection.accept_uni() => match stream {
                Ok(recv) => {
                    tokio::spawn(relay::block(shared.clone(), Hop::Node(node.clone()), recv));
                }
                Err(e) => break e,
            },
        }
    };
    tracing::info!(%node, "node link over: {why}");
}

/// The message in `bytes`, which must be one whole frame.
fn one_frame(bytes: &[u8]) -> Result<Message, String> {
    let (prefix, frame) = bytes.split_at_checked(4).ok_or("a short frame")?;
    let len = u32::from_be_bytes([prefix[0], prefix[1], prefix[2], prefix[3]]);
    if usize::try_from(len).ok() != Some(frame.len()) {
        return Err("not one whole frame".into());
    }
    decode_payload(frame).map_err(|e| e.to_string())
}

/// Reads one message from another node and hands it to its site's session
/// here; answers whether that took it.
async fn take_message(
    registry: Arc<Registry>,
    mut send: quinn::SendStream,
    mut recv: quinn::RecvStream,
) {
    let taken = tokio::time::timeout(FORWARD, async {
        let to = relay::read_route(&mut recv).await?;
        let bytes = recv
            .read_to_end(MAX_FRAME + 4)
            .await
            .map_err(|e| e.to_string())?;
        let message = one_frame(&bytes)?;
        Ok::<_, String>(relay::deliver(&registry, &to.claimant, message))
    })
    .await;
    let answer = match taken {
        Ok(Ok(true)) => TAKEN,
        Ok(Ok(false)) => NOT_TAKEN,
        Ok(Err(e)) => {
            tracing::debug!("roaming: a message from another node was unreadable: {e}");
            NOT_TAKEN
        }
        Err(_) => NOT_TAKEN,
    };
    let _ = send.write_all(&[answer]).await;
    let _ = send.finish();
}

#[cfg(test)]
mod tests {
    use super::*;
    use sync_protocol::roaming::Fetch;

    #[test]
    fn a_message_crosses_as_one_whole_frame_and_nothing_else() {
        let message = Message::Fetch(Fetch {
            transfer: 7,
            origin: "branch-1".into(),
            claimant: "branch-2".into(),
            job: "0193".into(),
            claim: "c".into(),
            blocks: vec![0, 1],
        });
        let frame = FrameCodec::default().encode_to_vec(&message).unwrap();
        assert_eq!(one_frame(&frame).unwrap(), message);
        assert!(one_frame(&frame[..frame.len() - 1]).is_err());
        let mut longer = frame.clone();
        longer.push(0);
        assert!(one_frame(&longer).is_err());
        assert!(one_frame(&frame[..3]).is_err());
    }
}
