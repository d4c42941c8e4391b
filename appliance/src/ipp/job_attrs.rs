//! The attributes of a job (Get-Job-Attributes, Get-Jobs, and the job group
//! answered to Print-Job and Create-Job). Pure: built from the stored
//! [`JobRecord`], the queue and the request's host.
//!
//! Privacy: for anyone but the owner, the attributes listed in
//! `job-privacy-attributes` are left out, so users cannot read each other's
//! document names.

use ipp::prelude::*;

use super::requested::Requested;
use crate::ipp_wire::stored_template;
use crate::ipp_wire::values::*;
use crate::job::JobRecord;
use crate::queue::Queue;

/// Attributes only the owner sees.
const PRIVATE: &[&str] = &[
    "job-name",
    "job-originating-user-name",
    "document-name-supplied",
];

/// What Get-Jobs returns when no `requested-attributes` is given.
pub fn get_jobs_default() -> Requested {
    Requested::only(&["job-id", "job-uri"])
}

/// The job group answered to Print-Job and Create-Job.
pub fn submission_answer() -> Requested {
    Requested::only(&[
        "job-id",
        "job-uri",
        "job-uuid",
        "job-state",
        "job-state-reasons",
        "job-state-message",
    ])
}

/// Renders a job's attributes.
///
/// `base` is the URI prefix the client used (`ipp://host:port`); `viewer_is_owner` decides
/// whether private attributes are included; `now_secs` is the current Unix
/// time (`job-printer-up-time`).
pub fn job_attributes(
    job: &JobRecord,
    queue: &Queue,
    base: &str,
    viewer_is_owner: bool,
    now_secs: i64,
    requested: &Requested,
) -> Vec<IppAttribute> {
    let secs = |ms: i64| IppValue::Integer(i32::try_from(ms / 1000).unwrap_or(i32::MAX));
    let optional_secs = |ms: Option<i64>| ms.map_or(IppValue::NoValue, secs);
    let optional_date = |ms: Option<i64>| ms.map_or(IppValue::NoValue, date_time);
    let reasons: Vec<&str> = job
        .state_reasons
        .split(',')
        .filter(|r| !r.is_empty())
        .collect();

    let mut all: Vec<(&str, IppValue)> = vec![
        ("job-id", IppValue::Integer(job.ipp_job_id)),
        (
            "job-uri",
            uri(&format!("{base}{}", queue.job_path(job.ipp_job_id))),
        ),
        ("job-uuid", uri(&job.uuid.urn())),
        ("job-printer-uri", uri(&format!("{base}{}", queue.path()))),
        ("job-name", name(&job.name)),
        ("job-originating-user-name", name(&job.owner)),
        ("job-state", enumeration(job.state as i32)),
        (
            "job-state-reasons",
            if reasons.is_empty() {
                keyword("none")
            } else {
                keywords(&reasons)
            },
        ),
        ("job-state-message", text(&job.state_message)),
        (
            "number-of-documents",
            IppValue::Integer(i32::from(job.document.is_some())),
        ),
        ("time-at-creation", secs(job.created_ms)),
        ("time-at-processing", optional_secs(job.processing_ms)),
        ("time-at-completed", optional_secs(job.completed_ms)),
        (
            "job-printer-up-time",
            IppValue::Integer(i32::try_from(now_secs).unwrap_or(i32::MAX)),
        ),
        ("date-time-at-creation", date_time(job.created_ms)),
        ("date-time-at-processing", optional_date(job.processing_ms)),
        ("date-time-at-completed", optional_date(job.completed_ms)),
    ];
    if let Some(doc) = &job.document {
        all.push((
            "job-k-octets",
            IppValue::Integer(i32::try_from(doc.size.div_ceil(1024)).unwrap_or(i32::MAX)),
        ));
        all.push(("document-format-supplied", mime(&doc.format)));
        if let Some(pages) = doc.analysis.pages {
            let copies = stored_template::settings(&job.template).copies;
            all.push((
                "job-impressions",
                IppValue::Integer(i32::try_from(pages.saturating_mul(copies)).unwrap_or(i32::MAX)),
            ));
        }
        if let Some(doc_name) = &doc.name {
            all.push(("document-name-supplied", name(doc_name)));
        }
    }
    if let Some(printer) = &job.printer {
        all.push(("output-device-assigned", name(printer)));
    }

    let stored = stored_template::decode(&job.template);
    let mut out: Vec<IppAttribute> = all
        .into_iter()
        .filter(|(n, _)| viewer_is_owner || !PRIVATE.contains(n))
        .filter(|(n, _)| requested.wants(n))
        .map(|(n, v)| attr(n, v))
        .collect();
    out.extend(
        stored
            .into_iter()
            .filter(|a| requested.wants(a.name().as_str())),
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::queue::Queues;
    use std::path::Path;

    fn job() -> JobRecord {
        JobRecord {
            ipp_job_id: 4,
            name: "salaries.pdf".into(),
            state_message: "Release it at any printer".into(),
            template: stored_template::encode(&[attr("copies", IppValue::Integer(2))]),
            ..JobRecord::sample()
        }
    }

    fn render(owner: bool, requested: &Requested) -> Vec<IppAttribute> {
        let queues = Queues::from_config(&Config::parse("", Path::new("t")).unwrap());
        job_attributes(
            &job(),
            queues.default_queue().unwrap(),
            "ipp://h:631",
            owner,
            1_700_000_100,
            requested,
        )
    }

    fn get<'a>(attrs: &'a [IppAttribute], name: &str) -> Option<&'a IppValue> {
        attrs
            .iter()
            .find(|a| a.name().as_str() == name)
            .map(|a| a.value())
    }

    #[test]
    fn owner_sees_everything_including_template() {
        let attrs = render(true, &Requested::everything());
        assert_eq!(
            get(&attrs, "job-uri").and_then(as_str),
            Some("ipp://h:631/ipp/print/secure/jobs/4")
        );
        assert_eq!(get(&attrs, "job-state"), Some(&IppValue::Enum(4)));
        assert_eq!(get(&attrs, "copies"), Some(&IppValue::Integer(2)));
        assert_eq!(get(&attrs, "job-k-octets"), Some(&IppValue::Integer(3)));
        assert_eq!(get(&attrs, "time-at-processing"), Some(&IppValue::NoValue));
        assert!(get(&attrs, "job-name").is_some());
    }

    #[test]
    fn other_users_do_not_see_private_attributes() {
        let attrs = render(false, &Requested::everything());
        for private in PRIVATE {
            assert!(get(&attrs, private).is_none(), "{private} leaked");
        }
        assert!(get(&attrs, "job-state").is_some());
    }

    #[test]
    fn get_jobs_default_is_id_and_uri() {
        let attrs = render(true, &get_jobs_default());
        let names: Vec<&str> = attrs.iter().map(|a| a.name().as_str()).collect();
        assert_eq!(names, ["job-id", "job-uri"]);
    }
}
