//! When a job fetched from another site tells that site how its claim
//! ended: the pure rule the store applies in the savepoint of each change.

use crate::job::{JobRecord, JobState};

/// How a claim ended, for the job's origin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimEnd {
    /// The site holding the original.
    pub origin_site: String,
    /// The job's UUID there.
    pub origin_uuid: String,
    /// The claim.
    pub claim: String,
    /// Printed here (or may have been): the origin marks it printed.
    /// False: it was not; the origin holds it again.
    pub printed: bool,
}

/// The report a change of a fetched job produces, if any: when it leaves
/// the printer's hands for good here (completed, canceled, aborted), or is
/// held here because it may have printed. A job from another site that
/// certainly did not print never stays held here (`JobRecord::apply`
/// ends it), so "held" always means "may have printed".
pub fn report_for(before: JobState, job: &JobRecord) -> Option<ClaimEnd> {
    let origin = job.origin.as_ref()?;
    let ended = job.state.is_terminal() || job.state == JobState::PendingHeld;
    if !ended || before.is_terminal() || before == JobState::PendingHeld {
        return None;
    }
    Some(ClaimEnd {
        origin_site: origin.site.clone(),
        origin_uuid: origin.uuid.clone(),
        claim: origin.claim.clone(),
        printed: matches!(job.state, JobState::Completed | JobState::PendingHeld),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::job::{Origin, Transition};

    fn fetched() -> JobRecord {
        let mut job = JobRecord::sample();
        job.origin = Some(Origin {
            site: "branch-1".into(),
            uuid: "u1".into(),
            claim: "c1".into(),
            fetching: None,
        });
        job.state = JobState::Processing;
        job.printer = Some("lobby".into());
        job
    }

    #[test]
    fn a_fetched_job_reports_how_it_ended_once() {
        let mut job = fetched();
        job.apply(
            &Transition::Printed {
                label: "Lobby".into(),
            },
            1,
        )
        .unwrap();
        let report = report_for(JobState::Processing, &job).unwrap();
        assert!(report.printed);
        assert_eq!(
            (report.origin_site.as_str(), report.claim.as_str()),
            ("branch-1", "c1")
        );
        // Already final: nothing more to say.
        assert_eq!(report_for(JobState::Completed, &job), None);
        // A local job never reports.
        let mut local = JobRecord::sample();
        local.state = JobState::Completed;
        assert_eq!(report_for(JobState::Processing, &local), None);
    }

    #[test]
    fn a_fetched_job_that_did_not_print_ends_here_and_goes_back() {
        let mut job = fetched();
        job.apply(
            &Transition::NotPrinted {
                message: "The printer refused it.".into(),
                released: true,
            },
            1,
        )
        .unwrap();
        assert_eq!(
            job.state,
            JobState::Aborted,
            "never held here for a second try"
        );
        assert!(
            job.state_message.contains("held at site branch-1 again"),
            "{}",
            job.state_message
        );
        assert!(!report_for(JobState::Processing, &job).unwrap().printed);

        let mut job = fetched();
        job.apply(
            &Transition::HoldUncertain {
                message: "It may have printed.".into(),
            },
            1,
        )
        .unwrap();
        assert_eq!(
            job.state,
            JobState::PendingHeld,
            "may have printed: held here"
        );
        assert!(report_for(JobState::Processing, &job).unwrap().printed);
    }
}
