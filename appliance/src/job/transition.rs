//! A job's state changes as data. Every change the appliance makes to a
//! job is a [`Transition`], applied by one pure function,
//! [`JobRecord::apply`], which checks that the job is in a state that
//! allows it and changes the record. The store's writer applies a
//! transition against the row as it is at commit time (so every check is a
//! compare-and-set), a test can replay one, and sync can record what
//! changed in the same transaction.
//!
//! Time is a parameter: `apply` is given `now` by its caller.

use super::{Claim, DocumentRecord, JobRecord, JobState, NotPossible};
use crate::ipp_wire::stored_template;
use crate::ipp_wire::values::keyword;

/// One change to a job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transition {
    /// Send-Document: a document (if the request carried one), and whether
    /// it was the last.
    DocumentArrived {
        /// The document's record; `None` for a body-less "last" request.
        document: Option<DocumentRecord>,
        /// `last-document`.
        last: bool,
    },
    /// Cancel-Job, or deleted at a printer. With `owner`, only that user's
    /// job may be canceled.
    Cancel {
        /// Who or why, for `job-state-message`.
        message: String,
        /// The user the job must belong to, when the caller has not checked.
        owner: Option<String>,
    },
    /// Hold-Job until released.
    Hold,
    /// Release-Job on a direct queue: send when the printer is free.
    ReleaseToQueue,
    /// Released by its owner at a printer, with the settings the rules
    /// decided.
    ReleaseAtPrinter {
        /// The user releasing it (must own it).
        user: String,
        /// The printer's id.
        device: String,
        /// The printer's name, for the message.
        device_label: String,
        /// Copies to print.
        copies: u32,
        /// Print in monochrome.
        mono: bool,
        /// `sides` to print with, when changed.
        sides: Option<String>,
    },
    /// A forwarder starts sending the job to `printer` (a new sending,
    /// which the printer-side mark tells apart).
    Sending {
        /// The printer's id.
        printer: String,
        /// The printer's name, for the message.
        label: String,
    },
    /// The printer took the job and gave it an id.
    AcceptedByPrinter {
        /// The printer's job-id.
        device_job_id: i32,
        /// The printer's name, for the message.
        label: String,
    },
    /// What the printer says it is doing with the job.
    PrinterSays {
        /// The new `job-state-message`.
        message: String,
    },
    /// The printer finished the job.
    Printed {
        /// The printer's name, for the message.
        label: String,
    },
    /// The printer gave up on the job, or refused it for good.
    PrintFailed {
        /// Why.
        reason: String,
    },
    /// The printer did not take the job; nothing printed; try again at
    /// `at_ms`.
    RetryLater {
        /// Why, and when.
        message: String,
        /// The earliest next attempt.
        at_ms: i64,
    },
    /// A released job that certainly did not print goes back to its owner,
    /// as if never released.
    ReturnToOwner {
        /// Why.
        message: String,
    },
    /// The job may or may not have printed: held for its owner, still on
    /// record at its printer (journaled as uncertain).
    HoldUncertain {
        /// What happened and what to do.
        message: String,
    },
    /// The job certainly did not reach its printer: a released job is held
    /// for its owner again, a direct queue's is sent again.
    NotPrinted {
        /// What happened.
        message: String,
        /// Whether it was released from a pull queue.
        released: bool,
    },
    /// A pool member certainly did not take the job: it waits for the
    /// pool's next fit member, at once. Its attempts stay counted.
    PassOn {
        /// What happened, and that another printer of the pool takes it.
        message: String,
        /// The pool, for a job released to it (so every member sees it
        /// again); `None` for a job of a direct queue, which names the pool.
        pool: Option<String>,
    },
    /// Create-Job whose last document never came.
    AbortIncomplete {
        /// Why.
        message: String,
    },
    /// A held job not released in time.
    ExpireHeld {
        /// Why.
        message: String,
    },
    /// A printed job's time for reprint is over.
    EndReprint,
    /// The document of a job fetched from another site arrived whole and
    /// verified, and is in the spool (`spool_size` bytes on disk).
    Fetched {
        /// Bytes on disk.
        spool_size: u64,
    },
    /// Another site claims the held job to print it there: a
    /// compare-and-set that fails if another claim holds.
    Claim {
        /// The claiming site.
        site: String,
        /// The claim's id.
        claim: String,
        /// When the claim lapses unless completed.
        until_ms: i64,
    },
    /// The claiming site printed the job.
    PrintedElsewhere {
        /// The claim's id.
        claim: String,
    },
    /// The claiming site gave the job back (did not print it), or the
    /// claim lapsed: the job is held here again.
    ClaimEnded {
        /// The claim's id.
        claim: String,
    },
}

fn not_held(job: &JobRecord) -> NotPossible {
    NotPossible(format!(
        "job {} is {}, not held",
        job.ipp_job_id,
        job.state.keyword()
    ))
}

impl JobRecord {
    /// Refuses while another site's claim holds.
    fn check_unclaimed(&self, now: i64) -> Result<(), NotPossible> {
        match self.live_claim(now) {
            Some(claim) => Err(NotPossible(format!(
                "job {} is being released at site {}",
                self.ipp_job_id, claim.site
            ))),
            None => Ok(()),
        }
    }

    /// The site of claim `id` (lapsed or not), if it is this job's claim.
    fn claimed_by(&self, id: &str) -> Result<String, NotPossible> {
        match &self.claim {
            Some(claim) if claim.id == id && self.state == JobState::PendingHeld => {
                Ok(claim.site.clone())
            }
            _ => Err(NotPossible(format!(
                "job {} has no claim {id}",
                self.ipp_job_id
            ))),
        }
    }
}

fn require(job: &JobRecord, state: JobState) -> Result<(), NotPossible> {
    if job.state != state {
        return Err(NotPossible(format!("job is {}", job.state.keyword())));
    }
    Ok(())
}

fn require_unfinished(job: &JobRecord) -> Result<(), NotPossible> {
    if job.state.is_terminal() {
        return Err(NotPossible(format!(
            "job is already {}",
            job.state.keyword()
        )));
    }
    Ok(())
}

impl JobRecord {
    /// Applies `transition` at `now_ms`, or says why the job's state does
    /// not allow it (the record is then unchanged).
    pub fn apply(&mut self, transition: &Transition, now_ms: i64) -> Result<(), NotPossible> {
        let mut next = self.clone();
        next.change(transition, now_ms)?;
        next.settle_roamed(now_ms);
        *self = next;
        Ok(())
    }

    /// A job fetched from another site is never held here for a second
    /// try: one that certainly did not print (no printer on record) ends,
    /// and its origin holds it again (`roaming::report_for`). One that may
    /// have printed stays held here, as any such job, and its origin counts
    /// it printed, so it can never print at a third site too.
    fn settle_roamed(&mut self, now: i64) {
        if self.state != JobState::PendingHeld || self.printer.is_some() {
            return;
        }
        if let Some(origin) = &self.origin {
            let message = format!(
                "{} It is held at site {} again; release it from there.",
                self.state_message, origin.site
            );
            self.end(JobState::Aborted, "aborted-by-system", message.trim(), now);
        }
    }

    fn change(&mut self, transition: &Transition, now: i64) -> Result<(), NotPossible> {
        match transition {
            Transition::DocumentArrived { document, last } => {
                self.check_send_document()
                    .map_err(|_| NotPossible("the job no longer takes documents".into()))?;
                if let Some(document) = document {
                    if self.document.is_some() {
                        return Err(NotPossible("the job already has its document".into()));
                    }
                    self.document = Some(document.clone());
                }
                if *last {
                    self.close_documents(now);
                }
            }
            Transition::Cancel { message, owner } => {
                if owner.as_ref().is_some_and(|o| *o != self.owner) {
                    return Err(NotPossible("not your job".into()));
                }
                self.check_cancel()?;
                self.check_unclaimed(now)?;
                self.end(JobState::Canceled, "job-canceled-by-user", message, now);
            }
            Transition::Hold => {
                self.check_hold()?;
                self.hold_indefinitely("Held until released".into());
                self.template = stored_template::with_replaced(
                    &self.template,
                    "job-hold-until",
                    Some(keyword("indefinite")),
                );
            }
            Transition::ReleaseToQueue => {
                self.check_release()?;
                self.check_unclaimed(now)?;
                self.state = JobState::Pending;
                self.state_reasons = if self.documents_complete {
                    "none"
                } else {
                    "job-incoming"
                }
                .into();
                self.state_message = "Waiting for the printer".into();
                self.hold_until = None;
                self.next_attempt_ms = None;
                self.template =
                    stored_template::with_replaced(&self.template, "job-hold-until", None);
            }
            Transition::ReleaseAtPrinter {
                user,
                device,
                device_label,
                copies,
                mono,
                sides,
            } => {
                if self.owner != *user {
                    return Err(NotPossible("not your job".into()));
                }
                if self.state != JobState::PendingHeld || !self.documents_complete {
                    return Err(not_held(self));
                }
                self.check_unclaimed(now)?;
                self.template = released_template(&self.template, *copies, *mono, sides);
                self.state = JobState::Pending;
                self.state_reasons = "none".into();
                self.state_message = format!("Released at {device_label}");
                self.hold_until = None;
                self.clear_output();
                self.printer = Some(device.clone());
            }
            Transition::Sending { printer, label } => {
                require(self, JobState::Pending)?;
                self.state = JobState::Processing;
                self.state_reasons = "job-printing".into();
                self.state_message = format!("Sending to {label}");
                // Each sending starts anew: its time marks it at the printer.
                self.processing_ms = Some(now);
                self.printer = Some(printer.clone());
                self.attempts += 1;
                self.next_attempt_ms = None;
            }
            Transition::AcceptedByPrinter {
                device_job_id,
                label,
            } => {
                self.device_job_id = Some(*device_job_id);
                self.state_message = format!("Printing on {label} (printer job {device_job_id})");
            }
            Transition::PrinterSays { message } => self.state_message = message.clone(),
            Transition::Printed { label } => {
                require_unfinished(self)?;
                let message = format!("Printed on {label}");
                self.end(
                    JobState::Completed,
                    "job-completed-successfully",
                    &message,
                    now,
                );
            }
            Transition::PrintFailed { reason } => {
                require_unfinished(self)?;
                self.end(JobState::Aborted, "aborted-by-system", reason, now);
            }
            Transition::RetryLater { message, at_ms } => {
                require(self, JobState::Processing)?;
                self.state = JobState::Pending;
                self.state_reasons = "printer-stopped".into();
                self.state_message = message.clone();
                self.next_attempt_ms = Some(*at_ms);
            }
            Transition::ReturnToOwner { message } => {
                require(self, JobState::Processing)?;
                self.hold_indefinitely(message.clone());
                self.clear_output();
            }
            Transition::HoldUncertain { message } => {
                require_unfinished(self)?;
                // It may have printed: the printer it went to stays on record.
                self.hold_indefinitely(message.clone());
                self.device_job_id = None;
            }
            Transition::PassOn { message, pool } => {
                require(self, JobState::Processing)?;
                self.state = JobState::Pending;
                self.state_reasons = "none".into();
                self.state_message = message.clone();
                self.printer = pool.clone();
                self.processing_ms = None;
                self.device_job_id = None;
                self.next_attempt_ms = None;
            }
            Transition::NotPrinted { message, released } => {
                require(self, JobState::Processing)?;
                if *released {
                    self.hold_indefinitely(format!("{message} Release it again."));
                    self.clear_output();
                } else {
                    self.state = JobState::Pending;
                    self.state_reasons = "none".into();
                    self.state_message = format!("{message} Sending it again.");
                    self.next_attempt_ms = None;
                }
            }
            Transition::AbortIncomplete { message } => {
                if self.documents_complete || self.state.is_terminal() {
                    return Err(NotPossible("the job completed meanwhile".into()));
                }
                self.end(JobState::Aborted, "aborted-by-system", message, now);
            }
            Transition::ExpireHeld { message } => {
                if self.state != JobState::PendingHeld {
                    return Err(NotPossible(format!("the job is {}", self.state.keyword())));
                }
                self.check_unclaimed(now)?;
                self.end(JobState::Aborted, "aborted-by-system", message, now);
            }
            Transition::EndReprint => self.kept_until_ms = None,
            Transition::Fetched { spool_size } => {
                let fetching = self.origin.as_ref().is_some_and(|o| o.fetching.is_some());
                if !fetching || self.documents_complete || self.state.is_terminal() {
                    return Err(NotPossible(
                        "the job is not waiting for its document".into(),
                    ));
                }
                if let Some(origin) = &mut self.origin {
                    origin.fetching = None;
                }
                if let Some(document) = &mut self.document {
                    document.spool_size = *spool_size;
                }
                self.close_documents(now);
            }
            Transition::Claim {
                site,
                claim,
                until_ms,
            } => {
                if self.state != JobState::PendingHeld || !self.documents_complete {
                    return Err(not_held(self));
                }
                // The same claim asked again (its answer was lost): granted again.
                if self
                    .live_claim(now)
                    .is_some_and(|c| c.id == *claim && c.site == *site)
                {
                    return Ok(());
                }
                self.check_unclaimed(now)?;
                self.claim = Some(Claim {
                    site: site.clone(),
                    id: claim.clone(),
                    until_ms: *until_ms,
                });
                self.state_message = format!("Being released at site {site}");
            }
            Transition::PrintedElsewhere { claim } => {
                // The claim stays on record: it says where the job printed.
                let site = self.claimed_by(claim)?;
                let message = format!("Printed at site {site}");
                self.end(
                    JobState::Completed,
                    "job-completed-successfully",
                    &message,
                    now,
                );
            }
            Transition::ClaimEnded { claim } => {
                self.claimed_by(claim)?;
                self.claim = None;
                self.state_message = "Held until released".into();
            }
        }
        Ok(())
    }

    /// The last document came: the job waits for its printer (or its
    /// owner), or ends if it has no document at all.
    fn close_documents(&mut self, now: i64) {
        self.documents_complete = true;
        self.state_reasons = self
            .state_reasons
            .split(',')
            .filter(|r| *r != "job-incoming")
            .collect::<Vec<_>>()
            .join(",");
        if self.state_reasons.is_empty() {
            self.state_reasons = "none".into();
        }
        if self.document.is_none() {
            self.end(
                JobState::Aborted,
                "aborted-by-system",
                "The job ended without a document",
                now,
            );
        } else {
            self.state_message = match self.state {
                JobState::PendingHeld => "Waiting for you to release it at a printer".into(),
                _ => "Waiting for the printer".into(),
            };
        }
    }

    fn end(&mut self, state: JobState, reasons: &str, message: &str, now: i64) {
        self.state = state;
        self.state_reasons = reasons.into();
        self.state_message = message.into();
        self.completed_ms = Some(now);
    }
}

/// A stored template with a release's settings: copies, monochrome,
/// sides, and no `job-hold-until` (the hold is over).
fn released_template(stored: &[u8], copies: u32, mono: bool, sides: &Option<String>) -> Vec<u8> {
    let mut template = stored.to_vec();
    if copies != stored_template::settings(&template).copies {
        template = stored_template::with_replaced(
            &template,
            "copies",
            Some(ipp::prelude::IppValue::Integer(
                i32::try_from(copies).unwrap_or(1),
            )),
        );
    }
    if mono {
        template = stored_template::with_replaced(
            &template,
            "print-color-mode",
            Some(keyword("monochrome")),
        );
    }
    if let Some(sides) = sides {
        template = stored_template::with_replaced(&template, "sides", Some(keyword(sides)));
    }
    stored_template::with_replaced(&template, "job-hold-until", None)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_764_540_000_000;

    fn held() -> JobRecord {
        let mut job = JobRecord::sample();
        job.state = JobState::PendingHeld;
        job.documents_complete = true;
        job
    }

    fn release(user: &str) -> Transition {
        Transition::ReleaseAtPrinter {
            user: user.into(),
            device: "lobby".into(),
            device_label: "Lobby MFP".into(),
            copies: 2,
            mono: true,
            sides: Some("two-sided-long-edge".into()),
        }
    }

    #[test]
    fn a_release_takes_the_decided_settings_and_only_its_owner() {
        let mut job = held();
        let before = job.clone();
        let owner = job.owner.clone();
        assert!(job.apply(&release("mallory"), NOW).is_err());
        assert_eq!(job, before, "a refused transition changes nothing");
        job.apply(&release(&owner), NOW).unwrap();
        assert_eq!(
            (job.state, job.printer.as_deref()),
            (JobState::Pending, Some("lobby"))
        );
        let settings = stored_template::settings(&job.template);
        assert_eq!(
            (
                settings.copies,
                settings.color_mode.as_deref(),
                settings.sides.as_str()
            ),
            (2, Some("monochrome"), "two-sided-long-edge")
        );
        assert!(job.apply(&release(&owner), NOW).is_err(), "released once");
    }

    #[test]
    fn a_sending_is_marked_by_its_time_and_counted() {
        let mut job = held();
        let sending = Transition::Sending {
            printer: "lobby".into(),
            label: "Lobby".into(),
        };
        assert!(job.apply(&sending, NOW).is_err(), "held, not pending");
        job.state = JobState::Pending;
        job.apply(&sending, NOW).unwrap();
        assert_eq!(
            (job.state, job.processing_ms, job.attempts),
            (JobState::Processing, Some(NOW), 1)
        );
        let retry = Transition::RetryLater {
            message: "busy".into(),
            at_ms: NOW + 5000,
        };
        job.apply(&retry, NOW + 1).unwrap();
        job.apply(&sending, NOW + 6000).unwrap();
        assert_eq!(
            (job.processing_ms, job.attempts),
            (Some(NOW + 6000), 2),
            "a new sending, a new mark"
        );
    }

    #[test]
    fn a_job_passed_on_waits_for_the_pool_at_once_with_its_attempts_counted() {
        let mut job = held();
        job.state = JobState::Pending;
        job.printer = Some("floor".into());
        let sending = Transition::Sending {
            printer: "a".into(),
            label: "A".into(),
        };
        job.apply(&sending, NOW).unwrap();
        assert_eq!(job.printer.as_deref(), Some("a"));
        let pass_on = Transition::PassOn {
            message: "A did not answer; the next printer of Floor takes it".into(),
            pool: Some("floor".into()),
        };
        job.apply(&pass_on, NOW + 1).unwrap();
        assert_eq!(
            (
                job.state,
                job.printer.as_deref(),
                job.next_attempt_ms,
                job.attempts
            ),
            (JobState::Pending, Some("floor"), None, 1)
        );
        assert!(
            job.apply(&pass_on, NOW + 2).is_err(),
            "only a job being sent"
        );
        job.apply(&sending, NOW + 3).unwrap();
        let direct = Transition::PassOn {
            message: "again".into(),
            pool: None,
        };
        job.apply(&direct, NOW + 4).unwrap();
        assert_eq!((job.printer, job.attempts), (None, 2));
    }

    #[test]
    fn only_an_unfinished_job_ends_and_it_ends_once() {
        let mut job = JobRecord::sample();
        job.state = JobState::Processing;
        let printed = Transition::Printed {
            label: "Lobby".into(),
        };
        job.apply(&printed, NOW).unwrap();
        assert_eq!(
            (job.state, job.completed_ms),
            (JobState::Completed, Some(NOW))
        );
        assert!(job.apply(&printed, NOW + 1).is_err());
        let cancel = Transition::Cancel {
            message: "late".into(),
            owner: None,
        };
        assert!(job.apply(&cancel, NOW + 1).is_err());
    }

    #[test]
    fn an_uncertain_hold_keeps_the_printer_a_certain_one_forgets_it() {
        let mut sent = JobRecord::sample();
        sent.state = JobState::Processing;
        sent.printer = Some("lobby".into());
        sent.device_job_id = Some(7);
        let mut uncertain = sent.clone();
        uncertain
            .apply(
                &Transition::HoldUncertain {
                    message: "may have printed".into(),
                },
                NOW,
            )
            .unwrap();
        assert_eq!(
            (
                uncertain.state,
                uncertain.printer.as_deref(),
                uncertain.device_job_id
            ),
            (JobState::PendingHeld, Some("lobby"), None)
        );
        let mut returned = sent.clone();
        let not_printed = Transition::NotPrinted {
            message: "never got there.".into(),
            released: true,
        };
        returned.apply(&not_printed, NOW).unwrap();
        assert_eq!(
            (returned.state, returned.printer),
            (JobState::PendingHeld, None)
        );
        let mut direct = sent;
        let again = Transition::NotPrinted {
            message: "never got there.".into(),
            released: false,
        };
        direct.apply(&again, NOW).unwrap();
        assert_eq!(direct.state, JobState::Pending);
    }

    #[test]
    fn the_last_document_completes_or_ends_a_created_job() {
        let mut created = JobRecord::sample();
        created.documents_complete = false;
        created.document = None;
        created.state_reasons = "job-incoming".into();
        let mut empty = created.clone();
        let last = Transition::DocumentArrived {
            document: None,
            last: true,
        };
        empty.apply(&last, NOW).unwrap();
        assert_eq!(empty.state, JobState::Aborted, "no document at all");
        let document = JobRecord::sample().document;
        let arrived = Transition::DocumentArrived {
            document: document.clone(),
            last: true,
        };
        created.apply(&arrived, NOW).unwrap();
        assert_eq!(
            (created.documents_complete, created.state_reasons.as_str()),
            (true, "none")
        );
        assert!(
            created.apply(&arrived, NOW).is_err(),
            "one document per job"
        );
    }

    #[test]
    fn housekeeping_ends_only_what_is_still_due() {
        let mut job = held();
        let expire = Transition::ExpireHeld {
            message: "expired".into(),
        };
        job.apply(&expire, NOW).unwrap();
        assert_eq!(job.state, JobState::Aborted);
        assert!(job.apply(&expire, NOW).is_err());
        let mut complete = held();
        let abort = Transition::AbortIncomplete {
            message: "no document".into(),
        };
        assert!(complete.apply(&abort, NOW).is_err());
    }

    fn claim(site: &str, id: &str) -> Transition {
        Transition::Claim {
            site: site.into(),
            claim: id.into(),
            until_ms: NOW + 60_000,
        }
    }

    #[test]
    fn a_claim_is_a_compare_and_set_and_blocks_every_other_end_while_it_holds() {
        let mut job = held();
        let owner = job.owner.clone();
        job.apply(&claim("branch-2", "c1"), NOW).unwrap();
        assert_eq!(job.live_claim(NOW).unwrap().site, "branch-2");
        // A second site racing for it loses, and learns where it went.
        let lost = job.apply(&claim("branch-3", "c2"), NOW).unwrap_err();
        assert!(lost.0.contains("branch-2"), "{lost}");
        // Nor can it be released, canceled or expire here meanwhile.
        assert!(job.apply(&release(&owner), NOW).is_err());
        let cancel = Transition::Cancel {
            message: "deleted".into(),
            owner: Some(owner.clone()),
        };
        assert!(job.apply(&cancel, NOW).is_err());
        let expire = Transition::ExpireHeld {
            message: "expired".into(),
        };
        assert!(job.apply(&expire, NOW).is_err());
        // The same claim asked again (its answer was lost) is granted again.
        job.apply(&claim("branch-2", "c1"), NOW).unwrap();
        // Only its own claim completes it.
        assert!(
            job.apply(&Transition::PrintedElsewhere { claim: "c2".into() }, NOW)
                .is_err()
        );
        job.apply(&Transition::PrintedElsewhere { claim: "c1".into() }, NOW)
            .unwrap();
        assert_eq!(job.state, JobState::Completed);
        assert_eq!(job.state_message, "Printed at site branch-2");
        assert_eq!(
            job.claim.as_ref().map(|c| c.site.as_str()),
            Some("branch-2"),
            "where it printed stays on record"
        );
        // The claimant sent its report twice: the second changes nothing.
        assert!(
            job.apply(&Transition::PrintedElsewhere { claim: "c1".into() }, NOW)
                .is_err()
        );
        // Printed elsewhere: it cannot be claimed or released again.
        assert!(job.apply(&claim("branch-3", "c3"), NOW).is_err());
        assert!(job.apply(&release(&owner), NOW).is_err());
    }

    #[test]
    fn a_claim_given_back_or_lapsed_leaves_the_job_held_here() {
        let mut job = held();
        let owner = job.owner.clone();
        job.apply(&claim("branch-2", "c1"), NOW).unwrap();
        job.apply(&Transition::ClaimEnded { claim: "c1".into() }, NOW)
            .unwrap();
        assert_eq!(
            (job.state, job.claim.as_ref()),
            (JobState::PendingHeld, None)
        );
        // A claim whose site never came back lapses by itself: after its
        // time another site, or the owner here, may take the job.
        job.apply(&claim("branch-2", "c2"), NOW).unwrap();
        let later = NOW + 60_000;
        assert!(job.live_claim(later).is_none());
        job.apply(&claim("branch-3", "c3"), later).unwrap();
        job.apply(&Transition::ClaimEnded { claim: "c3".into() }, later)
            .unwrap();
        job.apply(&release(&owner), later).unwrap();
        assert_eq!(job.state, JobState::Pending);
        // A job not (yet) held whole cannot be claimed.
        let mut incoming = held();
        incoming.documents_complete = false;
        assert!(incoming.apply(&claim("branch-2", "c1"), NOW).is_err());
    }
}
