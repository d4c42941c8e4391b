//! Sending a job to an IPP printer with the `ipp` crate's client: Print-Job
//! streamed from the spool, then Get-Job-Attributes until the printer says
//! the job is done, and Cancel-Job when its owner cancels it meanwhile.
//!
//! The job's name at the printer carries a mark made from its UUID
//! ([`printer_job_name`]), so that after a restart in the middle of a
//! Print-Job the appliance can ask the printer (Get-Jobs) whether it got
//! the job ([`find_sent`]) instead of guessing.
//!
//! Deciding what a printer's answer means ([`classify_submission`],
//! [`device_outcome`]) is pure and unit-tested; the functions that talk
//! are thin.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use ipp::model::{DelimiterTag, Operation, StatusCode};
use ipp::prelude::*;
use tokio_util::compat::TokioAsyncReadCompatExt;

use super::{OutputError, document_stream};
use crate::ipp_wire::stored_template;
use crate::ipp_wire::values::{as_str, attr, keyword, mime, name};
use crate::job::{JobRecord, JobUuid};
use crate::printer::{IppPrinter, Supplies};
use crate::store::Documents;

/// What the printer said about a job it accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeviceJobState {
    /// Still queued or printing; the message says what it is doing.
    Active(String),
    /// Printed.
    Completed,
    /// Canceled at the printer.
    Canceled(String),
    /// The printer gave up on it.
    Aborted(String),
}

fn client(printer: &IppPrinter, timeout: Duration) -> Result<AsyncIppClient, OutputError> {
    let uri: Uri = printer.uri.parse().map_err(|e| {
        OutputError::Rejected(format!("printer URI {:?} is invalid: {e}", printer.uri))
    })?;
    let mut builder = AsyncIppClient::builder(uri).request_timeout(timeout);
    if let Some(pem) = &printer.trusted_pem {
        builder = builder.ca_cert(pem.as_slice());
    }
    Ok(builder.build())
}

/// Sends a request that carries no document; a transport failure means the
/// printer could not be reached (safe to try again).
async fn exchange(
    printer: &IppPrinter,
    req: IppRequestResponse,
    timeout: Duration,
) -> Result<IppRequestResponse, OutputError> {
    client(printer, timeout)?
        .send(req)
        .await
        .map_err(|e| unreachable(&e))
}

fn request(uri: &str, operation: Operation, user: &str) -> Result<IppRequestResponse, OutputError> {
    let parsed: Uri = uri
        .parse()
        .map_err(|e| OutputError::Rejected(format!("printer URI {uri:?} is invalid: {e}")))?;
    let mut req = IppRequestResponse::new(IppVersion::v1_1(), operation, Some(parsed))
        .map_err(|e| OutputError::Rejected(format!("cannot build the request: {e}")))?;
    req.attributes_mut().add(
        DelimiterTag::OperationAttributes,
        attr("requesting-user-name", name(user)),
    );
    Ok(req)
}

/// `requested-attributes` naming `names`.
fn requested(names: &[&str]) -> IppAttribute {
    attr(
        "requested-attributes",
        IppValue::Array(names.iter().map(|n| keyword(n)).collect()),
    )
}

/// The mark of one sending of a job to its printer: the last 8 hex digits
/// of its UUID (random bits of a UUIDv7) and the time this sending began,
/// in brackets. Each sending has its own, so an earlier one the printer
/// still lists is never taken for this one.
pub fn printer_mark(uuid: JobUuid, sending_since_ms: Option<i64>) -> String {
    let hex = uuid.0.simple().to_string();
    format!(
        "[{}-{:x}]",
        &hex[hex.len() - 8..],
        sending_since_ms.unwrap_or(0)
    )
}

/// The job's name as sent to the printer: its own name and its mark,
/// within IPP's 255 octets for a name.
pub fn printer_job_name(job: &JobRecord) -> String {
    let mark = printer_mark(job.uuid, job.processing_ms);
    let mut name = job.name.clone();
    let room = 255 - mark.len() - 1;
    if name.len() > room {
        let mut end = room;
        while !name.is_char_boundary(end) {
            end -= 1;
        }
        name.truncate(end);
    }
    if name.is_empty() {
        mark
    } else {
        format!("{name} {mark}")
    }
}

/// Sends `job` with Print-Job. Returns the printer's job-id (if it gave one).
pub async fn submit(
    printer: &IppPrinter,
    documents: &Documents,
    job: &JobRecord,
    timeout: Duration,
) -> Result<Option<i32>, OutputError> {
    let document = super::document_of(job)?;
    let mut req = request(&printer.uri, Operation::PrintJob, &job.owner)?;
    let op = DelimiterTag::OperationAttributes;
    req.attributes_mut()
        .add(op, attr("job-name", name(&printer_job_name(job))));
    req.attributes_mut()
        .add(op, attr("ipp-attribute-fidelity", IppValue::Boolean(false)));
    if let Some(doc_name) = &document.name {
        req.attributes_mut()
            .add(op, attr("document-name", name(doc_name)));
    }
    req.attributes_mut()
        .add(op, attr("document-format", mime(&document.format)));
    req.attributes_mut()
        .add(op, attr("compression", keyword("none")));
    for a in stored_template::decode(&job.template) {
        // The appliance's own hold is done; the printer must print at once.
        if a.name().as_str() != "job-hold-until" {
            req.attributes_mut().add(DelimiterTag::JobAttributes, a);
        }
    }
    let sent_everything = Arc::new(AtomicBool::new(false));
    let stream = document_stream(documents, job.uuid, document, sent_everything.clone());
    *req.payload_mut() = IppPayload::new_async(stream.compat());

    match client(printer, timeout)?.send(req).await {
        Ok(response) => classify_submission(response.header().status_code(), response.attributes()),
        Err(e) if sent_everything.load(Ordering::SeqCst) => Err(OutputError::Uncertain(format!(
            "the connection to the printer failed after the whole document was sent ({e}); \
             it may have printed"
        ))),
        Err(e) => Err(unreachable(&e)),
    }
}

/// What a Print-Job answer means.
pub fn classify_submission(
    status: StatusCode,
    attributes: &IppAttributes,
) -> Result<Option<i32>, OutputError> {
    let message = status_message(attributes).unwrap_or_else(|| status.to_string());
    let code = status as u16;
    if code < 0x0100 {
        let job_id = attributes
            .groups_of(DelimiterTag::JobAttributes)
            .flat_map(|g| g.attributes())
            .find(|a| a.name().as_str() == "job-id")
            .and_then(|a| a.value().as_integer().copied());
        return Ok(job_id);
    }
    match status {
        StatusCode::ServerErrorBusy
        | StatusCode::ServerErrorServiceUnavailable
        | StatusCode::ServerErrorNotAcceptingJobs
        | StatusCode::ServerErrorTemporaryError => Err(OutputError::Retry(format!(
            "printer busy or paused: {message}"
        ))),
        _ => Err(OutputError::Rejected(format!(
            "printer refused the job: {message} (status 0x{code:04x})"
        ))),
    }
}

/// Asks the printer about a job it accepted.
pub async fn query(
    printer: &IppPrinter,
    device_job_id: i32,
    user: &str,
    timeout: Duration,
) -> Result<DeviceJobState, OutputError> {
    let mut req = request(&printer.uri, Operation::GetJobAttributes, user)?;
    let op = DelimiterTag::OperationAttributes;
    req.attributes_mut()
        .add(op, attr("job-id", IppValue::Integer(device_job_id)));
    req.attributes_mut().add(
        op,
        requested(&["job-state", "job-state-reasons", "job-state-message"]),
    );
    let response = exchange(printer, req, timeout).await?;
    let status = response.header().status_code();
    if status == StatusCode::ClientErrorNotFound {
        // Printers forget finished jobs; one we gave it and it no longer
        // knows was printed and purged (ippeveprinter does this).
        return Ok(DeviceJobState::Completed);
    }
    if (status as u16) >= 0x0100 {
        return Err(OutputError::Retry(format!("printer answered {status}")));
    }
    Ok(device_outcome(response.attributes()))
}

/// A printer's record of a job the appliance sent it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SentJob {
    /// The printer's job-id.
    pub device_job_id: i32,
    /// Its state there.
    pub state: DeviceJobState,
    /// `job-k-octets`: how much of the document it received, if it says.
    pub k_octets: Option<i32>,
}

/// What became of a job whose sending was cut off, by the printer's record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CutOff {
    /// The printer has the whole job: follow it there (its job-id).
    Whole(i32),
    /// The printer has the job but not all of it, or stopped it: part of
    /// it may have printed.
    Partial(String),
    /// The printer never got the job: it did not print.
    Missing,
}

/// Judges a cut-off sending of a `size`-byte document by what the printer
/// says it has. Some printers take a connection that breaks mid-document
/// as the end of the document and print what came: the received size
/// tells those apart (within the 1 KiB rounding of `job-k-octets`).
pub fn judge_cut_off(found: Option<SentJob>, size: u64) -> CutOff {
    let Some(found) = found else {
        return CutOff::Missing;
    };
    match found.state {
        DeviceJobState::Aborted(why) | DeviceJobState::Canceled(why) => {
            CutOff::Partial(format!("the printer stopped it ({why})"))
        }
        _ => match found.k_octets.and_then(|k| u64::try_from(k).ok()) {
            Some(k) if k + 1 < size / 1024 => CutOff::Partial(format!(
                "the printer received {k} KiB of its {} KiB",
                size.div_ceil(1024)
            )),
            _ => CutOff::Whole(found.device_job_id),
        },
    }
}

/// Asks the printer whether it has `job` (by the mark in its name, among
/// its unfinished and its finished jobs), or `None` if it has no such job.
/// An error means the printer cannot tell.
pub async fn find_sent(
    printer: &IppPrinter,
    job: &JobRecord,
    timeout: Duration,
) -> Result<Option<SentJob>, OutputError> {
    let mark = printer_mark(job.uuid, job.processing_ms);
    for which in ["not-completed", "completed"] {
        let mut req = request(&printer.uri, Operation::GetJobs, &job.owner)?;
        let op = DelimiterTag::OperationAttributes;
        req.attributes_mut()
            .add(op, attr("which-jobs", keyword(which)));
        req.attributes_mut().add(
            op,
            requested(&[
                "job-id",
                "job-name",
                "job-k-octets",
                "job-state",
                "job-state-reasons",
                "job-state-message",
            ]),
        );
        let response = exchange(printer, req, timeout).await?;
        let status = response.header().status_code();
        if (status as u16) >= 0x0100 {
            return Err(OutputError::Retry(format!(
                "the printer cannot list its jobs: {status}"
            )));
        }
        if let Some(found) = marked_job(response.attributes(), &mark) {
            return Ok(Some(found));
        }
    }
    Ok(None)
}

/// The job whose name carries `mark` in a Get-Jobs answer.
pub fn marked_job(attributes: &IppAttributes, mark: &str) -> Option<SentJob> {
    attributes
        .groups_of(DelimiterTag::JobAttributes)
        .find(|g| {
            g.attributes().iter().any(|a| {
                a.name().as_str() == "job-name"
                    && as_str(a.value()).is_some_and(|n| n.contains(mark))
            })
        })
        .and_then(|g| {
            let integer = |n: &str| {
                g.attributes()
                    .iter()
                    .find(|a| a.name().as_str() == n)
                    .and_then(|a| a.value().as_integer().copied())
            };
            Some(SentJob {
                device_job_id: integer("job-id")?,
                state: job_state_of(g.attributes()),
                k_octets: integer("job-k-octets"),
            })
        })
}

/// Reads `job-state` and friends out of a Get-Job-Attributes answer.
pub fn device_outcome(attributes: &IppAttributes) -> DeviceJobState {
    let all: Vec<IppAttribute> = attributes
        .groups_of(DelimiterTag::JobAttributes)
        .flat_map(|g| g.attributes().iter().cloned())
        .collect();
    job_state_of(&all)
}

/// `job-state` and friends of one job's attributes.
fn job_state_of(attributes: &[IppAttribute]) -> DeviceJobState {
    let job_attr = |n: &str| {
        attributes
            .iter()
            .find(|a| a.name().as_str() == n)
            .map(|a| a.value().clone())
    };
    let message = job_attr("job-state-message")
        .as_ref()
        .and_then(|v| as_str(v).map(str::to_owned))
        .filter(|m| !m.is_empty())
        .or_else(|| {
            job_attr("job-state-reasons").map(|v| match v {
                IppValue::Array(values) => values
                    .iter()
                    .filter_map(as_str)
                    .collect::<Vec<_>>()
                    .join(", "),
                other => as_str(&other).unwrap_or_default().to_owned(),
            })
        })
        .unwrap_or_default();
    match job_attr("job-state") {
        Some(IppValue::Enum(9)) => DeviceJobState::Completed,
        Some(IppValue::Enum(7)) => DeviceJobState::Canceled(message),
        Some(IppValue::Enum(8)) => DeviceJobState::Aborted(message),
        _ => DeviceJobState::Active(message),
    }
}

/// What a printer says it can do (from Get-Printer-Attributes).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Capabilities {
    /// `printer-make-and-model`.
    pub make_and_model: Option<String>,
    /// `color-supported`.
    pub color: Option<bool>,
    /// Whether `sides-supported` offers two-sided printing.
    pub duplex: Option<bool>,
    /// `document-format-supported`.
    pub formats: Vec<String>,
    /// `printer-state` as a word (idle, processing, stopped).
    pub state: Option<String>,
    /// `printer-state-message`, when it says something.
    pub state_message: Option<String>,
    /// `printer-state-reasons`, without `none`.
    pub state_reasons: Vec<String>,
    /// `printer-is-accepting-jobs`.
    pub accepting: Option<bool>,
}

/// The attributes that say how a printer is now.
const CONDITION_ATTRIBUTES: [&str; 4] = [
    "printer-state",
    "printer-state-message",
    "printer-state-reasons",
    "printer-is-accepting-jobs",
];

/// Asks a printer how it is now (state, reasons, accepting): the
/// [`Capabilities`] fields about its condition, the others left empty.
pub async fn condition(
    printer: &IppPrinter,
    timeout: Duration,
) -> Result<Capabilities, OutputError> {
    let attributes = printer_attributes(printer, &CONDITION_ATTRIBUTES, timeout).await?;
    Ok(capabilities_from(&attributes))
}

/// Asks a printer what it can do.
pub async fn capabilities(
    printer: &IppPrinter,
    timeout: Duration,
) -> Result<Capabilities, OutputError> {
    let mut names = vec![
        "printer-make-and-model",
        "color-supported",
        "sides-supported",
        "document-format-supported",
    ];
    names.extend(CONDITION_ATTRIBUTES);
    let attributes = printer_attributes(printer, &names, timeout).await?;
    Ok(capabilities_from(&attributes))
}

/// Get-Printer-Attributes for `names`; a refusal is an error.
async fn printer_attributes(
    printer: &IppPrinter,
    names: &[&str],
    timeout: Duration,
) -> Result<IppAttributes, OutputError> {
    let mut req = request(&printer.uri, Operation::GetPrinterAttributes, "appliance")?;
    req.attributes_mut()
        .add(DelimiterTag::OperationAttributes, requested(names));
    let response = answered_ok(exchange(printer, req, timeout).await?)?;
    Ok(response.attributes().clone())
}

/// The response, if its status is a success.
fn answered_ok(response: IppRequestResponse) -> Result<IppRequestResponse, OutputError> {
    let status = response.header().status_code();
    if (status as u16) >= 0x0100 {
        return Err(OutputError::Rejected(format!(
            "the printer answered {status}"
        )));
    }
    Ok(response)
}

/// The value of printer attribute `name` in an answer.
fn printer_attribute(attributes: &IppAttributes, name: &str) -> Option<IppValue> {
    attributes
        .groups_of(DelimiterTag::PrinterAttributes)
        .flat_map(|g| g.attributes())
        .find(|a| a.name().as_str() == name)
        .map(|a| a.value().clone())
}

/// Reads [`Capabilities`] out of a Get-Printer-Attributes answer.
pub fn capabilities_from(attributes: &IppAttributes) -> Capabilities {
    let find = |n: &str| printer_attribute(attributes, n);
    let strings = |v: Option<IppValue>| -> Vec<String> {
        match v {
            Some(IppValue::Array(values)) => values
                .iter()
                .filter_map(as_str)
                .map(str::to_owned)
                .collect(),
            Some(other) => as_str(&other).map(str::to_owned).into_iter().collect(),
            None => Vec::new(),
        }
    };
    let sides = find("sides-supported");
    Capabilities {
        make_and_model: find("printer-make-and-model").and_then(|v| as_str(&v).map(str::to_owned)),
        color: match find("color-supported") {
            Some(IppValue::Boolean(b)) => Some(b),
            _ => None,
        },
        duplex: sides
            .is_some()
            .then(|| strings(sides).iter().any(|s| s.starts_with("two-sided"))),
        formats: strings(find("document-format-supported")),
        state: match find("printer-state") {
            Some(IppValue::Enum(3)) => Some("idle".into()),
            Some(IppValue::Enum(4)) => Some("processing".into()),
            Some(IppValue::Enum(5)) => Some("stopped".into()),
            _ => None,
        },
        state_message: find("printer-state-message")
            .and_then(|v| as_str(&v).map(str::to_owned))
            .filter(|m| !m.is_empty()),
        state_reasons: strings(find("printer-state-reasons"))
            .into_iter()
            .filter(|r| r != "none")
            .collect(),
        accepting: match find("printer-is-accepting-jobs") {
            Some(IppValue::Boolean(b)) => Some(b),
            _ => None,
        },
    }
}

/// Asks a printer for its supply levels.
pub async fn supplies(printer: &IppPrinter, timeout: Duration) -> Result<Supplies, OutputError> {
    let names = [
        "printer-supply",
        "printer-supply-description",
        "printer-supply-info-uri",
    ];
    let attributes = printer_attributes(printer, &names, timeout).await?;
    Ok(supplies_from(&attributes))
}

/// Reads [`Supplies`] out of a Get-Printer-Attributes answer; levels
/// without a description each, or the other way round, are not kept.
pub fn supplies_from(attributes: &IppAttributes) -> Supplies {
    let values = |n: &str| -> Vec<IppValue> {
        match printer_attribute(attributes, n) {
            Some(IppValue::Array(values)) => values,
            Some(one) => vec![one],
            None => Vec::new(),
        }
    };
    let levels: Vec<Vec<u8>> = values("printer-supply")
        .into_iter()
        .filter_map(|v| match v {
            IppValue::OctetString(bytes) => Some(bytes.to_vec()),
            _ => None,
        })
        .collect();
    let descriptions: Vec<String> = values("printer-supply-description")
        .iter()
        .filter_map(as_str)
        .map(str::to_owned)
        .collect();
    if levels.len() != descriptions.len() {
        return Supplies::default();
    }
    Supplies {
        levels,
        descriptions,
        info_uri: values("printer-supply-info-uri")
            .first()
            .and_then(as_str)
            .map(str::to_owned),
    }
}

/// Asks a printer to show where it is (Identify-Printer): `actions` such
/// as `sound` or `display` (with `message`).
pub async fn identify(
    printer: &IppPrinter,
    actions: &[String],
    message: Option<&str>,
    user: &str,
    timeout: Duration,
) -> Result<(), OutputError> {
    let mut req = request(&printer.uri, Operation::IdentifyPrinter, user)?;
    let operation = DelimiterTag::OperationAttributes;
    req.attributes_mut().add(
        operation,
        attr(
            "identify-actions",
            IppValue::Array(actions.iter().map(|a| keyword(a)).collect()),
        ),
    );
    if let Some(message) = message {
        req.attributes_mut().add(
            operation,
            attr("message", crate::ipp_wire::values::text(message)),
        );
    }
    answered_ok(exchange(printer, req, timeout).await?).map(|_| ())
}

/// Cancels a job at the printer (best effort: the printer may have finished).
pub async fn cancel(printer: &IppPrinter, device_job_id: i32, user: &str, timeout: Duration) {
    let Ok(mut req) = request(&printer.uri, Operation::CancelJob, user) else {
        return;
    };
    req.attributes_mut().add(
        DelimiterTag::OperationAttributes,
        attr("job-id", IppValue::Integer(device_job_id)),
    );
    if let Ok(client) = client(printer, timeout)
        && let Err(e) = client.send(req).await
    {
        tracing::warn!(device_job_id, error = %e, "could not cancel the job at the printer");
    }
}

/// A failure to talk to the printer, with every cause in the chain (the
/// last one, such as "invalid peer certificate: UnknownIssuer", is usually
/// the one to act on).
fn unreachable(e: &dyn std::error::Error) -> OutputError {
    let mut message = format!("printer not reachable: {e}");
    let mut source = e.source();
    while let Some(cause) = source {
        message.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    OutputError::Retry(message)
}

fn status_message(attributes: &IppAttributes) -> Option<String> {
    attributes
        .groups_of(DelimiterTag::OperationAttributes)
        .flat_map(|g| g.attributes())
        .find(|a| a.name().as_str() == "status-message")
        .and_then(|a| as_str(a.value()).map(str::to_owned))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ipp_wire::values::{enumeration, text};

    fn with_job(attrs: Vec<IppAttribute>) -> IppAttributes {
        let mut all = IppAttributes::new();
        for a in attrs {
            all.add(DelimiterTag::JobAttributes, a);
        }
        all
    }

    #[test]
    fn accepted_jobs_give_their_device_id() {
        let attrs = with_job(vec![attr("job-id", IppValue::Integer(42))]);
        assert_eq!(
            classify_submission(StatusCode::SuccessfulOk, &attrs),
            Ok(Some(42))
        );
        assert_eq!(
            classify_submission(
                StatusCode::SuccessfulOkIgnoredOrSubstitutedAttributes,
                &attrs
            ),
            Ok(Some(42))
        );
    }

    #[test]
    fn busy_printers_are_retried_and_refusals_are_final() {
        let none = IppAttributes::new();
        assert!(matches!(
            classify_submission(StatusCode::ServerErrorBusy, &none),
            Err(OutputError::Retry(_))
        ));
        assert!(matches!(
            classify_submission(StatusCode::ClientErrorDocumentFormatNotSupported, &none),
            Err(OutputError::Rejected(_))
        ));
    }

    #[test]
    fn supplies_are_read_in_pairs() {
        let level = |s: &str| IppValue::OctetString(bytes::Bytes::from(s.to_owned()));
        let mut all = IppAttributes::new();
        for a in [
            attr(
                "printer-supply",
                IppValue::Array(vec![
                    level("index=1;class=supplyThatIsConsumed;type=toner;level=40;"),
                    level("index=2;class=receptacleThatIsFilled;type=wasteToner;level=5;"),
                ]),
            ),
            attr(
                "printer-supply-description",
                IppValue::Array(vec![text("Black Toner"), text("Waste Toner")]),
            ),
            attr(
                "printer-supply-info-uri",
                crate::ipp_wire::values::uri("http://p/order"),
            ),
        ] {
            all.add(DelimiterTag::PrinterAttributes, a);
        }
        let supplies = supplies_from(&all);
        assert_eq!(supplies.levels.len(), 2);
        assert_eq!(supplies.descriptions, ["Black Toner", "Waste Toner"]);
        assert_eq!(supplies.info_uri.as_deref(), Some("http://p/order"));

        let mut unpaired = IppAttributes::new();
        unpaired.add(
            DelimiterTag::PrinterAttributes,
            attr("printer-supply", level("index=1;level=40;")),
        );
        assert_eq!(supplies_from(&unpaired), Supplies::default());
    }

    #[test]
    fn capabilities_are_read() {
        let mut all = IppAttributes::new();
        for a in [
            attr("printer-make-and-model", text("Lobby MFD 9000")),
            attr("color-supported", IppValue::Boolean(false)),
            attr(
                "sides-supported",
                IppValue::Array(vec![keyword("one-sided"), keyword("two-sided-long-edge")]),
            ),
            attr(
                "document-format-supported",
                IppValue::Array(vec![
                    crate::ipp_wire::values::mime("application/pdf"),
                    crate::ipp_wire::values::mime("image/pwg-raster"),
                ]),
            ),
            attr("printer-state", enumeration(3)),
        ] {
            all.add(DelimiterTag::PrinterAttributes, a);
        }
        let caps = capabilities_from(&all);
        assert_eq!(caps.make_and_model.as_deref(), Some("Lobby MFD 9000"));
        assert_eq!((caps.color, caps.duplex), (Some(false), Some(true)));
        assert_eq!(caps.formats, ["application/pdf", "image/pwg-raster"]);
        assert_eq!(caps.state.as_deref(), Some("idle"));
        assert_eq!(
            capabilities_from(&IppAttributes::new()),
            Capabilities::default()
        );
    }

    #[test]
    fn a_sent_job_is_found_by_the_mark_in_its_name() {
        let mut job = JobRecord::sample();
        job.name = "Q3 report".into();
        job.processing_ms = Some(1_764_540_000_000);
        let sent_name = printer_job_name(&job);
        let mark = printer_mark(job.uuid, job.processing_ms);
        assert!(sent_name.starts_with("Q3 report [") && sent_name.ends_with(&mark));
        let mut answer = IppAttributes::new();
        for (id, job_name, state) in [(7, "other [01234567-19ad]", 9), (8, sent_name.as_str(), 5)] {
            let mut group = ipp::attribute::IppAttributeGroup::new(DelimiterTag::JobAttributes);
            group
                .attributes_mut()
                .push(attr("job-id", IppValue::Integer(id)));
            group
                .attributes_mut()
                .push(attr("job-name", name(job_name)));
            group
                .attributes_mut()
                .push(attr("job-state", enumeration(state)));
            answer.groups_mut().push(group);
        }
        assert_eq!(
            marked_job(&answer, &mark),
            Some(SentJob {
                device_job_id: 8,
                state: DeviceJobState::Active(String::new()),
                k_octets: None
            })
        );
        assert_eq!(marked_job(&answer, "[ffffffff-0]"), None);
        // Another sending of the same job has another mark.
        assert_ne!(printer_mark(job.uuid, Some(1_764_540_000_001)), mark);
        // A long name is cut to leave room for the mark.
        job.name = "é".repeat(200);
        let long = printer_job_name(&job);
        assert!(long.len() <= 255 && long.ends_with(&mark), "{long}");
    }

    #[test]
    fn a_cut_off_sending_is_judged_by_what_the_printer_has() {
        let sent = |state, k_octets| {
            Some(SentJob {
                device_job_id: 8,
                state,
                k_octets,
            })
        };
        let size = 24_000_000;
        assert_eq!(judge_cut_off(None, size), CutOff::Missing);
        assert_eq!(
            judge_cut_off(sent(DeviceJobState::Completed, Some(23_438)), size),
            CutOff::Whole(8)
        );
        assert_eq!(
            judge_cut_off(sent(DeviceJobState::Completed, Some(23_437)), size),
            CutOff::Whole(8),
            "a printer that rounds down"
        );
        assert_eq!(
            judge_cut_off(sent(DeviceJobState::Active(String::new()), None), size),
            CutOff::Whole(8)
        );
        assert!(matches!(
            judge_cut_off(sent(DeviceJobState::Completed, Some(22_852)), size),
            CutOff::Partial(m) if m.contains("22852 KiB of its 23438")
        ));
        assert!(matches!(
            judge_cut_off(
                sent(DeviceJobState::Aborted("cut".into()), Some(23_438)),
                size
            ),
            CutOff::Partial(_)
        ));
    }

    #[test]
    fn device_states_are_read() {
        let done = with_job(vec![attr("job-state", enumeration(9))]);
        assert_eq!(device_outcome(&done), DeviceJobState::Completed);
        let aborted = with_job(vec![
            attr("job-state", enumeration(8)),
            attr("job-state-message", text("paper jam")),
        ]);
        assert_eq!(
            device_outcome(&aborted),
            DeviceJobState::Aborted("paper jam".into())
        );
        let printing = with_job(vec![
            attr("job-state", enumeration(5)),
            attr("job-state-reasons", keyword("job-printing")),
        ]);
        assert_eq!(
            device_outcome(&printing),
            DeviceJobState::Active("job-printing".into())
        );
    }
}
