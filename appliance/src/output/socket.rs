//! Sending a job to a raw TCP (AppSocket / JetDirect, port 9100) printer:
//! connect, stream the document, close the sending side, and wait briefly
//! for the printer to close. The printer has taken the job once every byte
//! was written and the connection shut down cleanly.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{OutputError, connect, document_of, document_stream};
use crate::job::JobRecord;
use crate::store::Documents;

/// How long to wait for the printer to close after the document was sent.
const DRAIN: Duration = Duration::from_secs(5);

/// Streams `job`'s document to `host:port`.
pub async fn submit(
    host: &str,
    port: u16,
    documents: &Documents,
    job: &JobRecord,
    timeout: Duration,
) -> Result<(), OutputError> {
    let document = document_of(job)?;
    let mut stream = connect(host, port, timeout).await?;

    let sent_everything = Arc::new(AtomicBool::new(false));
    let mut reader = document_stream(documents, job.uuid, document, sent_everything.clone());
    let copied = tokio::time::timeout(timeout, async {
        tokio::io::copy_buf(&mut reader, &mut stream).await?;
        stream.shutdown().await
    })
    .await;
    match copied {
        Ok(Ok(())) => {}
        Ok(Err(e))
            if !sent_everything.load(Ordering::SeqCst)
                && e.kind() == std::io::ErrorKind::InvalidData =>
        {
            return Err(OutputError::Rejected(e.to_string()));
        }
        Ok(Err(e)) => {
            return Err(OutputError::Uncertain(format!(
                "the connection to {host}:{port} broke while sending ({e}); part of the job may have printed"
            )));
        }
        Err(_) => {
            return Err(OutputError::Uncertain(format!(
                "sending to {host}:{port} took longer than {} s; part of the job may have printed",
                timeout.as_secs()
            )));
        }
    }
    // Printers close when done; some never do, which is fine too.
    let mut sink = [0u8; 1024];
    let _ = tokio::time::timeout(DRAIN, async {
        while matches!(stream.read(&mut sink).await, Ok(n) if n > 0) {}
    })
    .await;
    Ok(())
}
