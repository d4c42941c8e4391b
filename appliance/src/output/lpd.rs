//! Sending a job to an LPD printer (RFC 1179, "receive a printer job"):
//! the control file first, then the document streamed from the spool, each
//! acknowledged by the server.
//!
//! An LPD server only prints a job once it has received all of it, so a
//! transfer that breaks before the last acknowledgement is safe to retry;
//! one that breaks while waiting for that last acknowledgement is not (the
//! server may have the job), and is reported as uncertain.
//!
//! Building the control file is pure ([`control_file`]); every text field
//! is stripped of control characters so a job name cannot inject commands.
//! Source ports are not taken from the reserved 721–731 range RFC 1179
//! asks for: that needs root, and printers have long stopped checking.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::{OutputError, connect, document_of, document_stream};
use crate::job::JobRecord;
use crate::store::Documents;

/// The control file for `job`, and the data file's name in it.
pub fn control_file(job: &JobRecord, client_host: &str) -> (String, String) {
    let host = clean(client_host, 31);
    let number = job.ipp_job_id.rem_euclid(1000);
    let data_name = format!("dfA{number:03}{host}");
    let document_name = job
        .document
        .as_ref()
        .and_then(|d| d.name.as_deref())
        .unwrap_or(&job.name);
    let control = format!(
        "H{host}\nP{}\nJ{}\nN{}\nl{data_name}\nU{data_name}\n",
        clean(&job.owner, 31),
        clean(&job.name, 99),
        clean(document_name, 131),
    );
    (control, data_name)
}

/// Printable ASCII only (LPD is not UTF-8 clean), at most `max` bytes.
fn clean(text: &str, max: usize) -> String {
    let cleaned: String = text
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() || c == ' ' {
                c
            } else {
                '_'
            }
        })
        .take(max)
        .collect();
    if cleaned.is_empty() {
        "_".into()
    } else {
        cleaned
    }
}

/// Streams `job` to queue `queue` of the LPD server at `host:port`.
pub async fn submit(
    host: &str,
    port: u16,
    queue: &str,
    client_host: &str,
    documents: &Documents,
    job: &JobRecord,
    timeout: Duration,
) -> Result<(), OutputError> {
    let document = document_of(job)?;
    let mut stream = connect(host, port, timeout).await?;
    let (control, data_name) = control_file(job, client_host);
    let control_name = data_name.replacen("dfA", "cfA", 1);
    let retry = |e: std::io::Error| {
        OutputError::Retry(format!("LPD transfer to {host}:{port} failed: {e}"))
    };

    let transfer = async {
        command(
            &mut stream,
            &format!("\x02{}\n", clean(queue, 64)),
            "the queue",
        )
        .await?;
        command(
            &mut stream,
            &format!("\x02{} {control_name}\n", control.len()),
            "the control file",
        )
        .await?;
        stream.write_all(control.as_bytes()).await.map_err(retry)?;
        stream.write_all(&[0]).await.map_err(retry)?;
        ack(&mut stream, "the control file").await?;
        command(
            &mut stream,
            &format!("\x03{} {data_name}\n", document.size),
            "the document",
        )
        .await?;
        let mut reader = document_stream(
            documents,
            job.uuid,
            document,
            Arc::new(AtomicBool::new(false)),
        );
        let copied = tokio::io::copy_buf(&mut reader, &mut stream)
            .await
            .map_err(|e| {
                if e.kind() == std::io::ErrorKind::InvalidData {
                    OutputError::Rejected(e.to_string())
                } else {
                    retry(e)
                }
            })?;
        if copied != document.size {
            return Err(OutputError::Rejected(format!(
                "the stored document has {copied} bytes, not {}",
                document.size
            )));
        }
        stream.write_all(&[0]).await.map_err(retry)?;
        // The server has the whole job now: a lost answer may mean it prints.
        ack(&mut stream, "the document").await.map_err(|e| match e {
            OutputError::Retry(m) => OutputError::Uncertain(m),
            other => other,
        })
    };
    tokio::time::timeout(timeout, transfer)
        .await
        .map_err(|_| OutputError::Uncertain(format!("LPD transfer to {host}:{port} timed out")))?
}

/// Sends one command line and waits for its acknowledgement.
async fn command<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    line: &str,
    what: &str,
) -> Result<(), OutputError> {
    stream
        .write_all(line.as_bytes())
        .await
        .map_err(|e| OutputError::Retry(format!("LPD: cannot send {what}: {e}")))?;
    ack(stream, what).await
}

/// Reads the one-byte acknowledgement: 0 is yes, anything else is no.
async fn ack<S: AsyncRead + Unpin>(stream: &mut S, what: &str) -> Result<(), OutputError> {
    let mut byte = [0u8; 1];
    match stream.read_exact(&mut byte).await {
        Ok(_) if byte[0] == 0 => Ok(()),
        Ok(_) => Err(OutputError::Rejected(format!(
            "the LPD server refused {what} (answer {})",
            byte[0]
        ))),
        Err(e) => Err(OutputError::Retry(format!(
            "LPD: no answer for {what}: {e}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(name: &str) -> JobRecord {
        JobRecord {
            ipp_job_id: 1042,
            name: name.into(),
            ..JobRecord::sample()
        }
    }

    #[test]
    fn control_file_follows_rfc_1179() {
        let (control, data) = control_file(&job("Q3 report"), "branch-1");
        assert_eq!(data, "dfA042branch-1");
        assert_eq!(
            control,
            "Hbranch-1\nPalice\nJQ3 report\nNreport.pdf\nldfA042branch-1\nUdfA042branch-1\n"
        );
    }

    #[test]
    fn job_names_cannot_inject_commands() {
        let (control, _) = control_file(&job("evil\nUetc/passwd\n"), "h");
        assert_eq!(control.lines().filter(|l| l.starts_with('U')).count(), 1);
        assert!(control.contains("Jevil_Uetc/passwd_"));
        let (control, _) = control_file(&job("Zoë"), "h");
        assert!(
            control.contains("JZo_\n"),
            "non-ASCII is replaced: {control}"
        );
    }
}
