//! The IPP operations: one method per operation, each deciding with the
//! pure helpers of this module's siblings and calling the store for I/O.
//!
//! Every operation returns either a [`Reply`] or an [`IppError`]; the
//! server turns both into a response in one place ([`IppService::respond`]).

use std::sync::Arc;

use ipp::model::{DelimiterTag, Operation, StatusCode};
use ipp::prelude::*;
use tokio::io::AsyncRead;

use super::compression::Compression;
use super::error::IppError;
use super::intake::{self, Received};
use super::job_attrs::{self, job_attributes};
use super::printer_attrs::{self, PrinterStatus, printer_attributes};
use super::request::Request;
use super::requested::Requested;
use super::template::{self, TemplateCheck};
use crate::config::{IppConfig, QueueKind};
use crate::format;
use crate::ipp_wire::stored_template;
use crate::ipp_wire::values::{as_str, attr, keyword, set, text};
use crate::job::{DocumentRecord, JobRecord, JobState, JobUuid, Transition, now_ms};
use crate::metrics::{Metrics, QueueLabels, RequestLabels};
use crate::output::pool::Pools;
use crate::printer::{DeviceUri, OutputWake, PrinterHealth};
use crate::queue::{Queue, Queues, Target};
use crate::store::{JobQuery, JobStore};
use crate::uploads::UploadRegistry;

/// A successful answer: a status and attribute groups after the operation group.
#[derive(Debug, Default)]
pub struct Reply {
    /// `successful-ok` unless attributes were ignored.
    pub status: Option<StatusCode>,
    /// Groups in order (job, printer, unsupported).
    pub groups: Vec<(DelimiterTag, Vec<IppAttribute>)>,
}

impl Reply {
    fn group(tag: DelimiterTag, attributes: Vec<IppAttribute>) -> Reply {
        Reply {
            status: None,
            groups: vec![(tag, attributes)],
        }
    }

    /// Adds the unsupported-attributes group and the matching status, if any.
    fn with_unsupported(mut self, unsupported: Vec<IppAttribute>) -> Reply {
        if !unsupported.is_empty() {
            self.status = Some(StatusCode::SuccessfulOkIgnoredOrSubstitutedAttributes);
            self.groups
                .push((DelimiterTag::UnsupportedAttributes, unsupported));
        }
        self
    }
}

/// Everything the operations need; shared by all connections.
pub struct IppService {
    /// The queues served.
    pub queues: Queues,
    /// The job store.
    pub store: JobStore,
    /// Limits.
    pub limits: IppConfig,
    /// Site name.
    pub site: String,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// Printer conditions, for `printer-state-message`.
    pub health: PrinterHealth,
    /// Wakes direct-queue forwarders.
    pub wake: OutputWake,
    /// Printer pools, for the state of a queue that prints on one.
    pub pools: Pools,
    /// Jobs whose Send-Document is streaming right now; the document
    /// timeout leaves them alone.
    pub uploads: UploadRegistry,
    /// Document buffers shared by all uploads.
    pub upload_budget: intake::UploadBudget,
    /// Who a request acts as.
    pub auth: super::auth::IppAuth,
    /// When the service started with its configuration (ms since the
    /// epoch): `printer-config-change-time`, and the state's start until a
    /// printer's condition changes.
    pub started_ms: i64,
}

/// What a job-creating request asked for, once checked.
struct JobPlan {
    name: String,
    document_name: Option<String>,
    format: String,
    compression: Compression,
    template: TemplateCheck,
}

/// How long a printer may take to answer Identify-Printer.
const IDENTIFY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// The request's document stream (what follows the attributes).
pub type Body<'a> = &'a mut (dyn AsyncRead + Send + Unpin);

impl IppService {
    /// Runs one checked request. `base` is the URI prefix the client used
    /// (`ipp://host:port` or `ipps://host:port`), for the URIs answered.
    pub async fn dispatch(
        &self,
        req: &Request,
        base: &str,
        body: Body<'_>,
    ) -> Result<Reply, IppError> {
        let target = match &req.target_path {
            Some(path) => Some(self.queues.route(path).ok_or_else(|| {
                IppError::NotFound(format!(
                    "nothing is served at {path}; queues are at /ipp/print/NAME"
                ))
            })?),
            None => None,
        };
        match req.operation {
            Operation::CupsGetDefault => {
                let queue = self
                    .queues
                    .default_queue()
                    .ok_or_else(|| IppError::NotFound("no default queue".into()))?;
                self.get_printer_attributes(req, queue, base).await
            }
            Operation::CupsGetPrinters => self.cups_get_printers(req, base).await,
            op => {
                let target =
                    target.ok_or_else(|| IppError::BadRequest("printer-uri is required".into()))?;
                match (op, target) {
                    (Operation::GetPrinterAttributes, Target::Queue(q)) => {
                        self.get_printer_attributes(req, q, base).await
                    }
                    (Operation::ValidateJob, Target::Queue(q)) => self.validate_job(req, q),
                    (Operation::PrintJob, Target::Queue(q)) => {
                        self.print_job(req, q, base, body).await
                    }
                    (Operation::CreateJob, Target::Queue(q)) => self.create_job(req, q, base).await,
                    (Operation::GetJobs, Target::Queue(q)) => self.get_jobs(req, q, base).await,
                    (Operation::CancelMyJobs, Target::Queue(q)) => {
                        self.cancel_my_jobs(req, q).await
                    }
                    (Operation::IdentifyPrinter, Target::Queue(q)) => {
                        self.identify_printer(req, q).await
                    }
                    (_, Target::Job(q, id)) => self.job_operation(req, q, id, base, body).await,
                    (_, Target::Queue(q)) => {
                        let id = req.job_id.ok_or_else(|| {
                            IppError::BadRequest("job-id (or job-uri) is required".into())
                        })?;
                        self.job_operation(req, q, id, base, body).await
                    }
                }
            }
        }
    }

    async fn job_operation(
        &self,
        req: &Request,
        queue: &Queue,
        ipp_job_id: i32,
        base: &str,
        body: Body<'_>,
    ) -> Result<Reply, IppError> {
        let job = self
            .store
            .job_by_ipp_id(&queue.name, ipp_job_id)
            .await?
            .ok_or_else(|| {
                IppError::NotFound(format!("queue {} has no job {ipp_job_id}", queue.name))
            })?;
        match req.operation {
            Operation::GetJobAttributes => {
                let requested =
                    Requested::from_keywords(req.requested_attributes(), Requested::everything());
                let attrs = job_attributes(
                    &job,
                    queue,
                    base,
                    job.is_owned_by(&req.user),
                    now_ms() / 1000,
                    &requested,
                );
                Ok(Reply::group(DelimiterTag::JobAttributes, attrs))
            }
            Operation::SendDocument => self.send_document(req, queue, job, base, body).await,
            Operation::CancelJob => self.cancel_job(req, queue, job).await,
            Operation::CloseJob => self.close_job(req, queue, job, base).await,
            Operation::HoldJob => self.hold_job(req, job).await,
            Operation::ReleaseJob => self.release_job(req, queue, job).await,
            other => Err(IppError::BadRequest(format!(
                "{} is addressed to a queue, not a job",
                super::request::operation_name(other as i16)
            ))),
        }
    }

    fn plan_job(&self, req: &Request, needs_format: bool) -> Result<JobPlan, IppError> {
        let compression = Compression::from_request(req.string("compression"))?;
        let format = req
            .string("document-format")
            .unwrap_or(format::DEFAULT)
            .to_ascii_lowercase();
        if needs_format && !format::is_supported(&format) {
            return Err(IppError::FormatNotSupported(format));
        }
        let document_name = req.string("document-name").map(str::to_owned);
        let name = req
            .string("job-name")
            .map(str::to_owned)
            .or_else(|| document_name.clone())
            .unwrap_or_else(|| "Untitled".to_owned());
        let template = template::check(&req.job_attributes);
        if !template.unsupported.is_empty() && req.boolean("ipp-attribute-fidelity")? == Some(true)
        {
            return Err(IppError::AttributesNotSupported(template.unsupported));
        }
        Ok(JobPlan {
            name,
            document_name,
            format,
            compression,
            template,
        })
    }

    fn validate_job(&self, req: &Request, _queue: &Queue) -> Result<Reply, IppError> {
        let plan = self.plan_job(req, true)?;
        Ok(Reply::default().with_unsupported(plan.template.unsupported))
    }

    /// The record of a new job, held or pending as its queue and hold say.
    fn new_job(&self, req: &Request, queue: &Queue, plan: &JobPlan, uuid: JobUuid) -> JobRecord {
        job_record(queue, uuid, &req.user, &plan.name, &plan.template.accepted)
    }

    /// Takes a job that came by another way than IPP (LPD, a raw socket, a
    /// hot folder): its document streams into the spool exactly as an IPP
    /// document does (same limits, format detection, analysis and
    /// budget), and the job commits to `job.queue` like a Print-Job's.
    pub async fn submit(&self, job: ForeignJob, body: Body<'_>) -> Result<JobRecord, IppError> {
        let received = self.take_document(job.client, job.uuid, body).await?;
        self.commit(job, received).await
    }

    /// The first half of [`Self::submit`], for a way in that learns whose
    /// job it is after its document (LPD may send the control file last):
    /// the document in the spool, durable, deleted if dropped uncommitted.
    pub async fn take_document(
        &self,
        client: Option<std::net::IpAddr>,
        uuid: JobUuid,
        body: Body<'_>,
    ) -> Result<Received, IppError> {
        self.receive_document(
            client,
            uuid,
            body,
            (format::DEFAULT.to_owned(), Compression::None),
        )
        .await?
        .ok_or_else(|| IppError::BadRequest("the job has no document".into()))
    }

    /// The second half of [`Self::submit`]: the job and its document
    /// committed, the printer woken.
    pub async fn commit(&self, job: ForeignJob, received: Received) -> Result<JobRecord, IppError> {
        let queue = self
            .queues
            .get(&job.queue)
            .ok_or_else(|| IppError::NotFound(format!("there is no queue {:?}", job.queue)))?;
        let mut record = job_record(queue, job.uuid, &job.owner, &job.name, &job.template);
        record.document = Some(document_record(&received, job.document_name));
        record.documents_complete = true;
        let size = received.document.size;
        let record = self.store.insert(record, Some(received.document)).await?;
        self.count_received(queue, size);
        self.wake_output(queue);
        tracing::info!(job = %record.uuid, queue = %queue.name, id = record.ipp_job_id, owner = %record.owner, bytes = size, by = job.by, "job received");
        Ok(record)
    }

    async fn print_job(
        &self,
        req: &Request,
        queue: &Queue,
        base: &str,
        body: Body<'_>,
    ) -> Result<Reply, IppError> {
        let plan = self.plan_job(req, true)?;
        let uuid = JobUuid::new();
        let received = self.receive(req, uuid, body, &plan).await?.ok_or_else(|| {
            IppError::BadRequest("Print-Job needs a document; the request had none".into())
        })?;
        let mut job = self.new_job(req, queue, &plan, uuid);
        job.document = Some(document_record(&received, plan.document_name.clone()));
        job.documents_complete = true;
        let size = received.document.size;
        let job = self.store.insert(job, Some(received.document)).await?;
        self.count_received(queue, size);
        self.wake_output(queue);
        tracing::info!(job = %job.uuid, queue = %queue.name, id = job.ipp_job_id, owner = %job.owner, bytes = size, "job received");
        Ok(self.submission_reply(&job, queue, base, plan.template.unsupported))
    }

    async fn create_job(
        &self,
        req: &Request,
        queue: &Queue,
        base: &str,
    ) -> Result<Reply, IppError> {
        let plan = self.plan_job(req, false)?;
        let mut job = self.new_job(req, queue, &plan, JobUuid::new());
        job.state_reasons = format!("job-incoming,{}", job.state_reasons).replace(",none", "");
        job.state_message = "Waiting for the document".to_owned();
        let job = self.store.insert(job, None).await?;
        tracing::info!(job = %job.uuid, queue = %queue.name, id = job.ipp_job_id, owner = %job.owner, "job created, waiting for its document");
        Ok(self.submission_reply(&job, queue, base, plan.template.unsupported))
    }

    async fn send_document(
        &self,
        req: &Request,
        queue: &Queue,
        job: JobRecord,
        base: &str,
        body: Body<'_>,
    ) -> Result<Reply, IppError> {
        self.check_owner(req, &job)?;
        let last = req.boolean("last-document")?.ok_or_else(|| {
            IppError::BadRequest("Send-Document needs the last-document attribute".into())
        })?;
        match job.check_send_document() {
            Err(crate::job::SendDocumentRefusal::AlreadyComplete) => {
                return Err(IppError::MultipleDocuments);
            }
            Err(crate::job::SendDocumentRefusal::Finished(state)) => {
                return Err(IppError::NotPossible(format!(
                    "job {} is {} and takes no more documents",
                    job.ipp_job_id,
                    state.keyword()
                )));
            }
            Ok(()) => {}
        }
        let plan = self.plan_job(req, true)?;
        let _uploading = self.uploads.mark(job.uuid);
        let received = self.receive(req, job.uuid, body, &plan).await?;
        if received.is_some() && job.document.is_some() {
            return Err(IppError::MultipleDocuments);
        }
        let record = received
            .as_ref()
            .map(|r| document_record(r, plan.document_name.clone()));
        let size = received.as_ref().map_or(0, |r| r.document.size);
        let job = self
            .store
            .modify(
                job.uuid,
                received.map(|r| r.document),
                Transition::DocumentArrived {
                    document: record,
                    last,
                },
            )
            .await?;
        if size > 0 {
            self.count_received(queue, size);
        }
        self.wake_output(queue);
        Ok(self.submission_reply(&job, queue, base, plan.template.unsupported))
    }

    /// Close-Job: no more documents for a job made with Create-Job, as a
    /// Send-Document with `last-document` and no data would say. A job
    /// closed already stays as it is.
    async fn close_job(
        &self,
        req: &Request,
        queue: &Queue,
        job: JobRecord,
        base: &str,
    ) -> Result<Reply, IppError> {
        self.check_owner(req, &job)?;
        let job = match job.check_send_document() {
            Err(crate::job::SendDocumentRefusal::AlreadyComplete) => job,
            Err(crate::job::SendDocumentRefusal::Finished(state)) => {
                return Err(IppError::NotPossible(format!(
                    "job {} is {} already",
                    job.ipp_job_id,
                    state.keyword()
                )));
            }
            Ok(()) => {
                let closed = self
                    .store
                    .modify(
                        job.uuid,
                        None,
                        Transition::DocumentArrived {
                            document: None,
                            last: true,
                        },
                    )
                    .await?;
                self.wake_output(queue);
                closed
            }
        };
        Ok(self.submission_reply(&job, queue, base, Vec::new()))
    }

    /// Cancel-My-Jobs: every unfinished job of the requesting user on this
    /// queue that can still be canceled; with `job-ids`, those jobs, all or
    /// none (PWG 5100.11: any that is not the user's or cannot be canceled
    /// any more is named back, and nothing is canceled).
    async fn cancel_my_jobs(&self, req: &Request, queue: &Queue) -> Result<Reply, IppError> {
        if let Some(ids) = req.job_ids()? {
            let mut jobs = Vec::with_capacity(ids.len());
            let mut refused = Vec::new();
            for id in ids {
                match self.store.job_by_ipp_id(&queue.name, id).await? {
                    Some(job) if job.is_owned_by(&req.user) && job.check_cancel().is_ok() => {
                        jobs.push(job);
                    }
                    _ => refused.push(IppValue::Integer(id)),
                }
            }
            if !refused.is_empty() {
                return Err(IppError::NotPossibleFor(
                    "these jobs are not yours or can no longer be canceled; nothing was canceled"
                        .into(),
                    vec![attr("job-ids", set(refused))],
                ));
            }
            let canceled = jobs.len();
            for job in jobs {
                self.cancel(req, queue, job).await?;
            }
            tracing::info!(queue = %queue.name, by = %req.user, canceled, "Cancel-My-Jobs with job-ids");
            return Ok(Reply::default());
        }
        // A job being canceled at its printer stays unfinished for a while:
        // each is asked once.
        let mut asked = std::collections::HashSet::new();
        loop {
            let mine = self
                .store
                .list(JobQuery {
                    queue: Some(queue.name.clone()),
                    states: which_jobs("not-completed").unwrap_or_default().to_vec(),
                    owner: Some(req.user.clone()),
                    limit: self.limits.max_jobs_listed,
                })
                .await?;
            let cancelable: Vec<JobRecord> = mine
                .into_iter()
                .filter(|job| job.check_cancel().is_ok() && asked.insert(job.uuid))
                .collect();
            if cancelable.is_empty() {
                break;
            }
            for job in cancelable {
                self.cancel(req, queue, job).await?;
            }
        }
        tracing::info!(queue = %queue.name, by = %req.user, canceled = asked.len(), "Cancel-My-Jobs");
        Ok(Reply::default())
    }

    /// Identify-Printer: the printer behind a direct queue is asked to
    /// show itself (beep, flash, show the message).
    async fn identify_printer(&self, req: &Request, queue: &Queue) -> Result<Reply, IppError> {
        let config = match &queue.printer {
            Some(printer) if printer_attrs::identifies(queue) => printer,
            _ => {
                return Err(IppError::NotPossible(match queue.kind {
                    QueueKind::Pull => "this queue's jobs print at whichever printer their owner \
                                        logs in at: there is no one printer to identify"
                        .into(),
                    QueueKind::Direct => match &queue.pool {
                        Some(pool) => format!(
                            "this queue prints on the printers of pool {}: there is no one \
                             printer to identify",
                            pool.label()
                        ),
                        None => "this queue's printer cannot be asked to identify itself".into(),
                    },
                }));
            }
        };
        let actions = match req.attribute("identify-actions") {
            None => vec![printer_attrs::IDENTIFY_DEFAULT.to_owned()],
            Some(value) => {
                let values = match value {
                    IppValue::Array(values) => values.iter().collect(),
                    single => vec![single],
                };
                let known: Option<Vec<String>> = values
                    .iter()
                    .map(|v| {
                        as_str(v)
                            .filter(|a| printer_attrs::IDENTIFY_ACTIONS.contains(a))
                            .map(str::to_owned)
                    })
                    .collect();
                known.ok_or_else(|| {
                    IppError::AttributesNotSupported(vec![attr("identify-actions", value.clone())])
                })?
            }
        };
        let device = DeviceUri::with_trust(&config.uri, config.tls_ca.as_deref())
            .map_err(IppError::Internal)?;
        let DeviceUri::Ipp(printer) = device else {
            return Err(IppError::NotPossible(
                "this queue's printer cannot be asked to identify itself".into(),
            ));
        };
        crate::output::ipp::identify(
            &printer,
            &actions,
            req.string("message"),
            &req.user,
            IDENTIFY_TIMEOUT,
        )
        .await
        .map_err(|e| {
            IppError::NotPossible(format!(
                "the printer {} did not identify itself: {e}",
                config.id
            ))
        })?;
        tracing::info!(queue = %queue.name, printer = %config.id, by = %req.user, ?actions, "printer identified itself");
        Ok(Reply::default())
    }

    async fn cancel_job(
        &self,
        req: &Request,
        queue: &Queue,
        job: JobRecord,
    ) -> Result<Reply, IppError> {
        self.check_owner(req, &job)?;
        job.check_cancel().map_err(|e| IppError::NotPossible(e.0))?;
        self.cancel(req, queue, job).await?;
        Ok(Reply::default())
    }

    /// Cancels `job`, which its requester may cancel.
    async fn cancel(&self, req: &Request, queue: &Queue, job: JobRecord) -> Result<(), IppError> {
        let user = req.user.clone();
        let job = self
            .store
            .modify(
                job.uuid,
                None,
                Transition::Cancel {
                    message: format!("Canceled by {user}"),
                    owner: None,
                },
            )
            .await?;
        self.wake_output(queue);
        // A released job is followed by the forwarder of the printer it went to.
        if let Some(printer) = &job.printer {
            self.wake.wake(printer);
        }
        tracing::info!(job = %job.uuid, by = %req.user, "job canceled");
        Ok(())
    }

    async fn hold_job(&self, req: &Request, job: JobRecord) -> Result<Reply, IppError> {
        self.check_owner(req, &job)?;
        job.check_hold().map_err(|e| IppError::NotPossible(e.0))?;
        let until = req
            .string("job-hold-until")
            .unwrap_or("indefinite")
            .to_owned();
        if until != "indefinite" {
            return Err(IppError::AttributesNotSupported(vec![attr(
                "job-hold-until",
                keyword(&until),
            )]));
        }
        self.store.modify(job.uuid, None, Transition::Hold).await?;
        Ok(Reply::default())
    }

    async fn release_job(
        &self,
        req: &Request,
        queue: &Queue,
        job: JobRecord,
    ) -> Result<Reply, IppError> {
        if queue.kind == QueueKind::Pull {
            return Err(IppError::NotPossible(format!(
                "Jobs on queue {} are released at a printer: log in at any printer of this site to print them",
                queue.name
            )));
        }
        self.check_owner(req, &job)?;
        job.check_release()
            .map_err(|e| IppError::NotPossible(e.0))?;
        self.store
            .modify(job.uuid, None, Transition::ReleaseToQueue)
            .await?;
        self.wake_output(queue);
        Ok(Reply::default())
    }

    async fn get_jobs(&self, req: &Request, queue: &Queue, base: &str) -> Result<Reply, IppError> {
        let which = req.string("which-jobs").unwrap_or("not-completed");
        let states = which_jobs(which).ok_or_else(|| {
            IppError::AttributesNotSupported(vec![attr("which-jobs", keyword(which))])
        })?;
        let limit = match req.integer("limit")? {
            Some(n) if n > 0 => (n as u32).min(self.limits.max_jobs_listed),
            Some(_) => return Err(IppError::BadRequest("limit must be at least 1".into())),
            None => self.limits.max_jobs_listed,
        };
        // A pull queue is secure print: its jobs are listed to their owner
        // only. Elsewhere other users' jobs show without private attributes.
        let mine_only = req.boolean("my-jobs")? == Some(true) || queue.kind == QueueKind::Pull;
        let owner = mine_only.then(|| req.user.clone());
        let jobs = match req.job_ids()? {
            // Those jobs, in any state, that the requester may see listed.
            Some(ids) => {
                let mut jobs = Vec::with_capacity(ids.len());
                for id in ids.into_iter().take(limit as usize) {
                    if let Some(job) = self.store.job_by_ipp_id(&queue.name, id).await?
                        && owner.as_ref().is_none_or(|o| job.is_owned_by(o))
                    {
                        jobs.push(job);
                    }
                }
                jobs
            }
            None => {
                self.store
                    .list(JobQuery {
                        queue: Some(queue.name.clone()),
                        states: states.to_vec(),
                        owner,
                        limit,
                    })
                    .await?
            }
        };
        let requested =
            Requested::from_keywords(req.requested_attributes(), job_attrs::get_jobs_default());
        let now = now_ms() / 1000;
        Ok(Reply {
            status: None,
            groups: jobs
                .iter()
                .map(|job| {
                    (
                        DelimiterTag::JobAttributes,
                        job_attributes(
                            job,
                            queue,
                            base,
                            job.is_owned_by(&req.user),
                            now,
                            &requested,
                        ),
                    )
                })
                .collect(),
        })
    }

    async fn printer_status(&self, queue: &Queue, base: &str) -> Result<PrinterStatus, IppError> {
        let counts = self.store.count_by_state(Some(queue.name.clone())).await?;
        let queued = counts
            .iter()
            .filter(|(s, _)| !s.is_terminal())
            .map(|(_, n)| n)
            .sum();
        let (busy, problem) = match (&queue.printer, &queue.pool) {
            (Some(p), _) => self.health.get(&p.id),
            (None, Some(pool)) => self.pool_condition(pool),
            (None, None) => (false, None),
        };
        let state_since_ms = queue
            .printer
            .as_ref()
            .and_then(|p| self.health.changed_ms(&p.id))
            .unwrap_or(self.started_ms);
        Ok(PrinterStatus {
            base: base.to_owned(),
            tls: base.starts_with("ipps:"),
            authentication: self.auth.keyword(),
            site: self.site.clone(),
            queued_job_count: queued,
            processing: busy,
            state_message: problem,
            now_secs: now_ms() / 1000,
            state_since_secs: state_since_ms / 1000,
            config_since_secs: self.started_ms / 1000,
            max_document_bytes: self.limits.max_document_bytes,
            document_timeout_secs: self.limits.document_timeout_secs,
            spool_area_full: !self.store.reserve().accepts_documents(),
            supplies: match (&queue.kind, &queue.printer) {
                (QueueKind::Direct, Some(printer)) => self.health.supplies(&printer.id),
                _ => None,
            },
        })
    }

    /// `(busy, problem)` of a queue that prints on `pool`: busy while any
    /// member prints; a message naming each member that is not ready.
    fn pool_condition(&self, pool: &crate::config::PoolConfig) -> (bool, Option<String>) {
        let busy = pool.printers.iter().any(|m| self.health.get(m).0);
        let Some(view) = self.pools.view(&pool.id) else {
            return (busy, None);
        };
        let unfit: Vec<String> = view
            .config
            .printers
            .iter()
            .zip(&view.members)
            .filter_map(|(m, f)| f.reason().map(|r| format!("{m} {}: {r}", f.keyword())))
            .collect();
        if unfit.is_empty() {
            return (busy, None);
        }
        let taking = view.takers().iter().filter(|t| **t).count();
        let message = if taking == 0 {
            format!(
                "No printer of {} can print now; jobs wait ({})",
                pool.label(),
                unfit.join("; ")
            )
        } else {
            format!(
                "{} of {} printers of {} ready ({})",
                view.members.len() - unfit.len(),
                view.members.len(),
                pool.label(),
                unfit.join("; ")
            )
        };
        (busy, Some(message))
    }

    async fn get_printer_attributes(
        &self,
        req: &Request,
        queue: &Queue,
        base: &str,
    ) -> Result<Reply, IppError> {
        let status = self.printer_status(queue, base).await?;
        let requested =
            Requested::from_keywords(req.requested_attributes(), Requested::everything());
        Ok(Reply::group(
            DelimiterTag::PrinterAttributes,
            printer_attributes(queue, &status, &requested),
        ))
    }

    async fn cups_get_printers(&self, req: &Request, base: &str) -> Result<Reply, IppError> {
        let requested =
            Requested::from_keywords(req.requested_attributes(), Requested::everything());
        let mut groups = Vec::new();
        for queue in self.queues.all() {
            let status = self.printer_status(queue, base).await?;
            groups.push((
                DelimiterTag::PrinterAttributes,
                printer_attributes(queue, &status, &requested),
            ));
        }
        Ok(Reply {
            status: None,
            groups,
        })
    }

    fn check_owner(&self, req: &Request, job: &JobRecord) -> Result<(), IppError> {
        if job.is_owned_by(&req.user) {
            Ok(())
        } else {
            Err(IppError::NotAuthorized(format!(
                "job {} belongs to another user",
                job.ipp_job_id
            )))
        }
    }

    async fn receive(
        &self,
        req: &Request,
        uuid: JobUuid,
        body: Body<'_>,
        plan: &JobPlan,
    ) -> Result<Option<Received>, IppError> {
        self.receive_document(
            req.client,
            uuid,
            body,
            (plan.format.clone(), plan.compression),
        )
        .await
    }

    /// Streams a document into the spool; `document` is the declared format
    /// and the compression on the wire.
    async fn receive_document(
        &self,
        client: Option<std::net::IpAddr>,
        uuid: JobUuid,
        body: Body<'_>,
        document: (String, Compression),
    ) -> Result<Option<Received>, IppError> {
        let started = std::time::Instant::now();
        // A full disk refuses at once, before waiting for a writer.
        if !self.store.reserve().accepts_documents() {
            return Err(IppError::DiskFull);
        }
        let turn = self.upload_budget.writer_turn(client).await?;
        let received = intake::receive(
            self.store.spool().clone(),
            self.store.reserve().clone(),
            uuid,
            body,
            document,
            (
                self.limits.max_document_bytes,
                self.limits.idle_timeout_secs,
            ),
            turn,
        )
        .await;
        if let Ok(Some(_)) = &received {
            self.metrics
                .spool_write_seconds
                .observe(started.elapsed().as_secs_f64());
        }
        received
    }

    fn submission_reply(
        &self,
        job: &JobRecord,
        queue: &Queue,
        base: &str,
        unsupported: Vec<IppAttribute>,
    ) -> Reply {
        let attrs = job_attributes(
            job,
            queue,
            base,
            true,
            now_ms() / 1000,
            &job_attrs::submission_answer(),
        );
        Reply::group(DelimiterTag::JobAttributes, attrs).with_unsupported(unsupported)
    }

    fn count_received(&self, queue: &Queue, bytes: u64) {
        let labels = QueueLabels {
            queue: queue.name.clone(),
        };
        self.metrics.jobs_received.get_or_create(&labels).inc();
        self.metrics
            .document_bytes_received
            .get_or_create(&labels)
            .inc_by(bytes);
    }

    fn wake_output(&self, queue: &Queue) {
        if let Some(destination) = Queues::destination(queue) {
            self.wake.wake(destination);
        }
    }

    /// Encodes the response for a request's outcome (`version` and
    /// `request_id` echo the request).
    pub fn respond(
        &self,
        version: IppVersion,
        request_id: i32,
        operation: &str,
        outcome: Result<Reply, IppError>,
    ) -> bytes::Bytes {
        let (status, message, groups) = match outcome {
            Ok(reply) => (
                reply.status.unwrap_or(StatusCode::SuccessfulOk),
                None,
                reply.groups,
            ),
            Err(e) => {
                let status = e.status();
                let message = e.to_string();
                // Only the appliance's own failures are errors; a full disk
                // or a busy moment is worth a warning; a client's mistake
                // (whatever its status class) is not the operator's problem.
                match e {
                    IppError::Internal(_) => {
                        tracing::error!(operation, %message, "request failed");
                    }
                    IppError::DiskFull | IppError::Busy => {
                        tracing::warn!(operation, %message, "request refused");
                    }
                    _ => tracing::debug!(operation, %message, "request refused"),
                }
                let groups = match e {
                    IppError::AttributesNotSupported(attrs)
                    | IppError::NotPossibleFor(_, attrs) => {
                        vec![(DelimiterTag::UnsupportedAttributes, attrs)]
                    }
                    _ => Vec::new(),
                };
                (status, Some(message), groups)
            }
        };
        self.metrics
            .ipp_requests
            .get_or_create(&RequestLabels {
                operation: operation.to_owned(),
                status: match status as u16 {
                    0x0000..=0x00ff => "ok",
                    0x0400..=0x04ff => "client-error",
                    _ => "server-error",
                },
            })
            .inc();
        let response_version = if matches!(version.0 >> 8, 1 | 2) {
            version
        } else {
            IppVersion::v1_1()
        };
        let Ok(mut response) =
            IppRequestResponse::new_response(response_version, status, request_id)
        else {
            // Only fixed attributes are added, so this cannot fail; answer
            // with the bare header rather than not at all.
            let mut bare = ipp::IppHeader::new(response_version, status as i16, request_id)
                .to_bytes()
                .to_vec();
            bare.push(DelimiterTag::EndOfAttributes as u8);
            return bare.into();
        };
        if let Some(message) = message {
            response.attributes_mut().add(
                DelimiterTag::OperationAttributes,
                attr("status-message", text(&message)),
            );
        }
        for (tag, attrs) in groups {
            let mut group = ipp::attribute::IppAttributeGroup::new(tag);
            group.attributes_mut().extend(attrs);
            response.attributes_mut().groups_mut().push(group);
        }
        response.to_bytes()
    }
}

/// A job arriving by another way than IPP: what an IPP client would have
/// said in its request's attributes.
#[derive(Debug, Clone)]
pub struct ForeignJob {
    /// The job's id, chosen by the caller (a hot folder names its work
    /// after it, to recognise it after a crash).
    pub uuid: JobUuid,
    /// The queue it lands in, by name.
    pub queue: String,
    /// Who owns it.
    pub owner: String,
    /// `job-name`.
    pub name: String,
    /// `document-name`, when the way in knows one.
    pub document_name: Option<String>,
    /// Job template attributes (`copies`, ...), as an IPP client would send them.
    pub template: Vec<IppAttribute>,
    /// The sending host, for its share of the spool writers.
    pub client: Option<std::net::IpAddr>,
    /// The way in, for the log (`lpd`, `raw`, `hot-folder`).
    pub by: &'static str,
}

/// The record of a new job, held or pending as its queue and hold say.
fn job_record(
    queue: &Queue,
    uuid: JobUuid,
    owner: &str,
    name: &str,
    template: &[IppAttribute],
) -> JobRecord {
    let hold = template::hold_until(template);
    let held = queue.kind == QueueKind::Pull || hold.as_deref() == Some("indefinite");
    let (state, reasons, message) = if held {
        (
            JobState::PendingHeld,
            "job-hold-until-specified",
            match queue.kind {
                QueueKind::Pull => "Waiting for you to release it at a printer".to_owned(),
                QueueKind::Direct => "Held until released".to_owned(),
            },
        )
    } else {
        (
            JobState::Pending,
            "none",
            "Waiting for the printer".to_owned(),
        )
    };
    JobRecord {
        uuid,
        queue: queue.name.clone(),
        ipp_job_id: 0,
        owner: owner.to_owned(),
        name: name.to_owned(),
        state,
        state_reasons: reasons.to_owned(),
        state_message: message,
        hold_until: if held {
            Some(hold.unwrap_or_else(|| "indefinite".to_owned()))
        } else {
            None
        },
        template: stored_template::encode(template),
        document: None,
        documents_complete: false,
        created_ms: now_ms(),
        processing_ms: None,
        completed_ms: None,
        printer: None,
        device_job_id: None,
        attempts: 0,
        next_attempt_ms: None,
        kept_until_ms: None,
        claim: None,
        origin: None,
    }
}

fn document_record(received: &Received, name: Option<String>) -> DocumentRecord {
    DocumentRecord {
        format: received.format.clone(),
        name,
        size: received.document.size,
        spool_size: received.document.spool_size,
        sha256: received.document.sha256.clone(),
        analysis: received.analysis,
        storage: received.document.storage,
    }
}

/// States selected by a `which-jobs` keyword.
pub fn which_jobs(keyword: &str) -> Option<&'static [JobState]> {
    use JobState::*;
    Some(match keyword {
        "not-completed" => &[Pending, PendingHeld, Processing, ProcessingStopped],
        "completed" => &[Canceled, Aborted, Completed],
        "all" => &[
            Pending,
            PendingHeld,
            Processing,
            ProcessingStopped,
            Canceled,
            Aborted,
            Completed,
        ],
        "pending" => &[Pending],
        "pending-held" => &[PendingHeld],
        "processing" => &[Processing],
        "processing-stopped" => &[ProcessingStopped],
        "canceled" => &[Canceled],
        "aborted" => &[Aborted],
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn which_jobs_keywords() {
        assert_eq!(which_jobs("completed").map(<[_]>::len), Some(3));
        assert_eq!(which_jobs("not-completed").map(<[_]>::len), Some(4));
        assert_eq!(
            which_jobs("pending-held"),
            Some(&[JobState::PendingHeld][..])
        );
        assert!(which_jobs("fetchable").is_none());
    }
}
