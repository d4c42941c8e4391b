//! One LPD connection (the I/O around [`super::lpd`]): a command, and for
//! "receive a printer job" its control and data files in either order.
//! A piece is acknowledged only once it is safe: a data file once it is in
//! the spool, and the piece that completes a job (its control file or its
//! last data file) only once the job has committed. A connection that
//! ends before a job is complete leaves nothing behind, so the sender's
//! retry is the only copy.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use ipp::prelude::IppValue;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use super::lpd::{self, Command, ControlFile, Subcommand};
use crate::ipp::intake::Received;
use crate::ipp::service::{ForeignJob, IppService};
use crate::ipp_wire::values::attr;
use crate::job::{JobState, JobUuid};
use crate::store::JobQuery;

const ACK: &[u8] = &[0];
const NACK: &[u8] = &[1];

/// Jobs listed for one user in a queue state answer.
const MAX_LISTED: u32 = 100;

type Conn = BufReader<TcpStream>;

/// Why a connection ended early; logged, never sent (LPD has no words
/// for it beyond a negative acknowledgement).
#[derive(Debug, thiserror::Error)]
enum Ended {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Refused(String),
}

pub(super) async fn serve(stream: TcpStream, peer: SocketAddr, service: &IppService) {
    let mut conn = BufReader::new(stream);
    let idle = service.limits.idle_timeout();
    let outcome = async {
        let Some(line) = read_line(&mut conn, idle).await? else {
            return Ok(());
        };
        match lpd::parse_command(&line).map_err(|e| Ended::Refused(e.to_string()))? {
            Command::ReceiveJob { queue } => receive_job(&mut conn, peer, service, &queue).await,
            Command::QueueState { queue, long, users } => {
                let text = queue_state(service, &queue, long, &users).await;
                conn.get_mut().write_all(text.as_bytes()).await?;
                Ok(())
            }
            // The appliance prints as jobs come; there is nothing to start.
            Command::PrintWaiting { .. } => Ok(()),
            Command::RemoveJobs { queue } => Err(Ended::Refused(format!(
                "removing jobs from {queue} over LPD is refused: LPD cannot say who asks; \
                 use IPP or the release app"
            ))),
        }
    }
    .await;
    if let Err(e) = outcome {
        tracing::warn!(%peer, error = %e, "LPD connection ended");
    }
}

/// A job being received: its control file and data files as they come.
#[derive(Default)]
struct Incoming {
    control: Option<ControlFile>,
    data: HashMap<String, (JobUuid, Received)>,
}

async fn receive_job(
    conn: &mut Conn,
    peer: SocketAddr,
    service: &IppService,
    queue: &str,
) -> Result<(), Ended> {
    if service.queues.get(queue).is_none() {
        conn.get_mut().write_all(NACK).await?;
        return Err(Ended::Refused(format!("there is no queue {queue:?}")));
    }
    conn.get_mut().write_all(ACK).await?;
    let idle = service.limits.idle_timeout();
    let mut job = Incoming::default();
    while let Some(line) = read_line(conn, idle).await? {
        let received = match lpd::parse_subcommand(&line) {
            Ok(Subcommand::Abort) => {
                job = Incoming::default();
                Ok(())
            }
            Ok(Subcommand::ControlFile { size, .. }) => {
                control_file(conn, &mut job, size, idle).await
            }
            Ok(Subcommand::DataFile { size, name }) => {
                data_file(conn, peer, service, &mut job, (size, name), idle).await
            }
            Err(e) => Err(Ended::Refused(e.to_string())),
        };
        let step = match received {
            Ok(()) => commit_ready(peer, service, queue, &mut job).await,
            Err(e) => Err(e),
        };
        if let Err(e) = step {
            // Best effort: the sender may be gone already.
            let _ = conn.get_mut().write_all(NACK).await;
            return Err(e);
        }
        conn.get_mut().write_all(ACK).await?;
    }
    if job.control.is_some() || !job.data.is_empty() {
        return Err(Ended::Refused(
            "the connection closed before the job was complete; nothing of it was kept".into(),
        ));
    }
    Ok(())
}

/// Reads a control file (its subcommand already parsed) into `job`.
async fn control_file(
    conn: &mut Conn,
    job: &mut Incoming,
    size: u64,
    idle: Duration,
) -> Result<(), Ended> {
    if size == 0 || size > lpd::MAX_CONTROL_FILE {
        return Err(Ended::Refused(format!(
            "a control file of {size} bytes is refused (at most {})",
            lpd::MAX_CONTROL_FILE
        )));
    }
    conn.get_mut().write_all(ACK).await?;
    let mut data = Vec::new();
    let read = timed(idle, (&mut *conn).take(size).read_to_end(&mut data)).await?;
    if read as u64 != size {
        return Err(Ended::Refused("the control file was cut short".into()));
    }
    end_of_file(conn, idle).await?;
    let control = lpd::parse_control_file(&data).map_err(|e| Ended::Refused(e.to_string()))?;
    job.control = Some(control);
    Ok(())
}

/// Streams a data file (its subcommand already parsed) into the spool.
async fn data_file(
    conn: &mut Conn,
    peer: SocketAddr,
    service: &IppService,
    job: &mut Incoming,
    (size, name): (u64, String),
    idle: Duration,
) -> Result<(), Ended> {
    if size == 0 {
        return Err(Ended::Refused(
            "a data file of unknown length (size 0) is refused: send its size".into(),
        ));
    }
    let limit = service.limits.max_document_bytes;
    if size > limit {
        return Err(Ended::Refused(format!(
            "a data file of {size} bytes is over ipp.max_document_bytes ({limit})"
        )));
    }
    conn.get_mut().write_all(ACK).await?;
    let uuid = JobUuid::new();
    let mut body = (&mut *conn).take(size);
    let received = service
        .take_document(Some(peer.ip()), uuid, &mut body)
        .await
        .map_err(|e| Ended::Refused(e.to_string()))?;
    if received.document.size != size {
        return Err(Ended::Refused(format!(
            "data file {name} was cut short ({} of {size} bytes)",
            received.document.size
        )));
    }
    end_of_file(conn, idle).await?;
    job.data.insert(name, (uuid, received));
    Ok(())
}

/// Commits every data file whose control file has come: one job each.
async fn commit_ready(
    peer: SocketAddr,
    service: &IppService,
    queue: &str,
    job: &mut Incoming,
) -> Result<(), Ended> {
    let Some(control) = &mut job.control else {
        return Ok(());
    };
    while let Some(at) = control
        .files
        .iter()
        .position(|f| job.data.contains_key(&f.name))
    {
        let file = control.files.remove(at);
        let Some((uuid, received)) = job.data.remove(&file.name) else {
            continue;
        };
        let template = if file.copies > 1 {
            vec![attr(
                "copies",
                IppValue::Integer(i32::try_from(file.copies).unwrap_or(i32::MAX)),
            )]
        } else {
            Vec::new()
        };
        let name = control
            .job_name
            .clone()
            .or_else(|| file.source_name.clone())
            .unwrap_or_else(|| file.name.clone());
        let foreign = ForeignJob {
            uuid,
            queue: queue.to_owned(),
            owner: control.user.clone(),
            name,
            document_name: file.source_name,
            template,
            client: Some(peer.ip()),
            by: "lpd",
        };
        service
            .commit(foreign, received)
            .await
            .map_err(|e| Ended::Refused(e.to_string()))?;
    }
    if control.files.is_empty() {
        job.control = None;
    }
    Ok(())
}

/// The queue's state as text: how many jobs wait, and the jobs of the
/// users the request names (LPD cannot say who asks, so nobody's job
/// names are shown to whoever asks for all).
async fn queue_state(service: &IppService, queue: &str, long: bool, users: &[String]) -> String {
    if service.queues.get(queue).is_none() {
        return format!("{queue}: no such queue\n");
    }
    let waiting = vec![
        JobState::Pending,
        JobState::PendingHeld,
        JobState::Processing,
    ];
    let query = |owner: Option<String>| JobQuery {
        queue: Some(queue.to_owned()),
        states: waiting.clone(),
        owner,
        limit: MAX_LISTED,
    };
    let mut text = match service.store.list(query(None)).await {
        Ok(jobs) if jobs.len() as u32 >= MAX_LISTED => {
            format!("{queue} is ready: {MAX_LISTED} or more jobs waiting\n")
        }
        Ok(jobs) => format!("{queue} is ready: {} jobs waiting\n", jobs.len()),
        Err(e) => return format!("{queue}: the job list cannot be read now ({e})\n"),
    };
    for user in users {
        let Ok(jobs) = service.store.list(query(Some(user.clone()))).await else {
            continue;
        };
        for job in jobs {
            let size = job.document.as_ref().map_or(0, |d| d.size);
            if long {
                text.push_str(&format!(
                    "{}: {} [job {}]\n\t{} {} bytes\n",
                    job.owner,
                    job.state.keyword(),
                    job.ipp_job_id,
                    job.name,
                    size
                ));
            } else {
                text.push_str(&format!(
                    "{:<10} {:<6} {:<38} {} bytes\n",
                    job.owner, job.ipp_job_id, job.name, size
                ));
            }
        }
    }
    text
}

/// A line up to LF (not included), at most [`lpd::MAX_LINE`] bytes;
/// `None` at the end of the stream.
async fn read_line(conn: &mut Conn, idle: Duration) -> Result<Option<Vec<u8>>, Ended> {
    let mut line = Vec::new();
    let limit = lpd::MAX_LINE as u64 + 1;
    timed(idle, (&mut *conn).take(limit).read_until(b'\n', &mut line)).await?;
    match line.pop() {
        None => Ok(None),
        Some(b'\n') => Ok(Some(line)),
        Some(_) if line.len() + 1 >= lpd::MAX_LINE => {
            Err(Ended::Refused("a line longer than 1024 bytes".into()))
        }
        Some(_) => Err(Ended::Refused("the line was cut short".into())),
    }
}

/// The zero byte that ends every file sent.
async fn end_of_file(conn: &mut Conn, idle: Duration) -> Result<(), Ended> {
    match timed(idle, conn.read_u8()).await? {
        0 => Ok(()),
        other => Err(Ended::Refused(format!(
            "a file ended with {other:#04x} instead of a zero byte"
        ))),
    }
}

async fn timed<T>(
    idle: Duration,
    io: impl std::future::Future<Output = std::io::Result<T>>,
) -> Result<T, Ended> {
    match tokio::time::timeout(idle, io).await {
        Ok(done) => Ok(done?),
        Err(_) => Err(Ended::Refused("the sender went quiet".into())),
    }
}
