//! Print rules applied at release: forced monochrome for groups, forced
//! duplex for long jobs, a maximum job size and a per-user page quota.
//!
//! [`Rules`] is plain data shared with central and the sync protocol
//! (`sync_protocol::rules`): a standalone site reads it from its config,
//! an enrolled one receives it from central. [`decide`] is a pure function
//! of the rules, the user, the job and what the user asked for at the
//! printer: overrides are granted only within the rules, and a refusal says
//! why in words a user at a printer can act on.

pub use sync_protocol::rules::{Period, Quota, Rules};

/// The current quota period, as a user reads it.
fn period_noun(period: Period) -> &'static str {
    match period {
        Period::Day => "today",
        Period::Week => "this week",
        Period::Month => "this month",
    }
}

/// What a rule decision reads about a job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobFacts {
    /// Pages of one copy, when known.
    pub pages: Option<u32>,
    /// Copies the job was submitted with.
    pub copies: u32,
    /// `sides` the job was submitted with.
    pub sides: String,
}

/// What the user asked for when releasing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Overrides {
    /// Copies instead of the submitted number.
    pub copies: Option<u32>,
    /// Print in monochrome.
    pub mono: bool,
    /// `sides` instead of the submitted value.
    pub sides: Option<String>,
}

/// How a job is printed, after the rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// Copies to print.
    pub copies: u32,
    /// Force `print-color-mode=monochrome`.
    pub mono: bool,
    /// `sides` to set, when it changes.
    pub sides: Option<String>,
    /// Impressions this prints (pages times copies), when known.
    pub impressions: Option<u32>,
    /// What the rules changed, for the user.
    pub notes: Vec<Note>,
}

/// Something the rules changed about how a job prints: in words
/// (`Display`) and as data (`Serialize`, tagged by `code`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "code", rename_all = "snake_case")]
pub enum Note {
    /// Black and white, for the user's group.
    MonoForced,
    /// Two-sided, for a job over `above` pages.
    DuplexForced {
        /// `force_duplex_above_pages`.
        above: u32,
    },
}

impl std::fmt::Display for Note {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Note::MonoForced => {
                f.write_str("Printed in black and white: the rules for your group ask for it.")
            }
            Note::DuplexForced { above } => write!(
                f,
                "Printed on both sides: jobs over {above} pages print two-sided here."
            ),
        }
    }
}

/// Why a job may not be printed: in words a user can act on (`Display`),
/// and as data (`Serialize`, tagged by `code`) for a screen that says it in
/// the user's language.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "code", rename_all = "snake_case")]
pub enum Refusal {
    /// More impressions than one job may have.
    MaxPages {
        /// Impressions asked for (pages times copies).
        pages: u32,
        /// Copies asked for.
        copies: u32,
        /// `max_pages_per_job`.
        limit: u32,
    },
    /// More impressions than the user has left in the period.
    Quota {
        /// Impressions asked for.
        needed: u32,
        /// Impressions left.
        left: u64,
        /// The quota.
        quota: u32,
        /// Its period.
        period: Period,
    },
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::MaxPages {
                pages,
                copies,
                limit,
            } => write!(
                f,
                "This job is {pages} pages with {copies} cop{}; the limit here is {limit} pages \
                 per job. Release it with fewer copies, or ask your administrator.",
                if *copies == 1 { "y" } else { "ies" },
            ),
            Refusal::Quota {
                needed,
                left,
                quota,
                period,
            } => write!(
                f,
                "This job needs {needed} pages and you have {left} of your {quota} pages left \
                 {}. Your quota renews at the start of the next period.",
                period_noun(*period)
            ),
        }
    }
}

impl std::error::Error for Refusal {}

/// Decides how a job is printed for a user in `groups` who has printed
/// `used` impressions in the current quota period.
pub fn decide(
    rules: &Rules,
    groups: &[String],
    job: &JobFacts,
    asked: &Overrides,
    used: u64,
) -> Result<Decision, Refusal> {
    let copies = asked.copies.unwrap_or(job.copies).max(1);
    let impressions = job.pages.map(|p| p.saturating_mul(copies));
    let mut notes = Vec::new();

    if rules.max_pages_per_job > 0
        && let Some(n) = impressions
        && n > rules.max_pages_per_job
    {
        return Err(Refusal::MaxPages {
            pages: n,
            copies,
            limit: rules.max_pages_per_job,
        });
    }
    if let (Some(quota), Some(n)) = (rules.quota, impressions) {
        let left = u64::from(quota.pages).saturating_sub(used);
        if u64::from(n) > left {
            return Err(Refusal::Quota {
                needed: n,
                left,
                quota: quota.pages,
                period: quota.period,
            });
        }
    }

    let forced_mono = groups.iter().any(|g| rules.force_mono_groups.contains(g));
    if forced_mono && !asked.mono {
        notes.push(Note::MonoForced);
    }
    let mut sides = asked.sides.clone().filter(|s| *s != job.sides);
    let long_job = rules.force_duplex_above_pages > 0
        && job
            .pages
            .is_some_and(|p| p > rules.force_duplex_above_pages);
    let effective = sides.as_deref().unwrap_or(&job.sides);
    if long_job && !effective.starts_with("two-sided") {
        sides = Some("two-sided-long-edge".into());
        notes.push(Note::DuplexForced {
            above: rules.force_duplex_above_pages,
        });
    }
    Ok(Decision {
        copies,
        mono: forced_mono || asked.mono,
        sides,
        impressions,
        notes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(pages: Option<u32>) -> JobFacts {
        JobFacts {
            pages,
            copies: 1,
            sides: "one-sided".into(),
        }
    }

    fn rules() -> Rules {
        Rules {
            force_mono_groups: vec!["students".into()],
            force_duplex_above_pages: 10,
            max_pages_per_job: 100,
            quota: Some(Quota {
                pages: 50,
                period: Period::Month,
            }),
            ..Rules::default()
        }
    }

    #[test]
    fn no_rules_grant_what_is_asked() {
        let d = decide(
            &Rules::default(),
            &[],
            &job(Some(3)),
            &Overrides {
                copies: Some(2),
                mono: true,
                sides: Some("two-sided-short-edge".into()),
            },
            0,
        )
        .unwrap();
        assert_eq!(
            (d.copies, d.mono, d.sides.as_deref(), d.impressions),
            (2, true, Some("two-sided-short-edge"), Some(6))
        );
        assert!(d.notes.is_empty());
    }

    #[test]
    fn groups_are_forced_to_mono_and_long_jobs_to_duplex() {
        let d = decide(
            &rules(),
            &["staff".into(), "students".into()],
            &job(Some(11)),
            &Overrides {
                sides: Some("one-sided".into()),
                ..Overrides::default()
            },
            0,
        )
        .unwrap();
        assert!(d.mono);
        assert_eq!(d.sides.as_deref(), Some("two-sided-long-edge"));
        assert_eq!(d.notes.len(), 2);
        let short = decide(
            &rules(),
            &["staff".into()],
            &job(Some(10)),
            &Overrides::default(),
            0,
        )
        .unwrap();
        assert_eq!((short.mono, short.sides), (false, None));
    }

    #[test]
    fn size_and_quota_refuse_with_a_reason() {
        let big = Overrides {
            copies: Some(11),
            ..Overrides::default()
        };
        let e = decide(&rules(), &[], &job(Some(10)), &big, 0).unwrap_err();
        let text = e.to_string();
        assert!(
            text.contains("110 pages") && text.contains("100 pages per job"),
            "{e}"
        );
        assert_eq!(
            serde_json::to_value(&e).unwrap(),
            serde_json::json!({"code": "max_pages", "pages": 110, "copies": 11, "limit": 100})
        );
        let e = decide(&rules(), &[], &job(Some(8)), &Overrides::default(), 45).unwrap_err();
        assert!(
            e.to_string().contains("5 of your 50 pages left this month"),
            "{e}"
        );
        assert_eq!(
            serde_json::to_value(&e).unwrap(),
            serde_json::json!({"code": "quota", "needed": 8, "left": 5, "quota": 50, "period": "month"})
        );
        assert!(decide(&rules(), &[], &job(Some(5)), &Overrides::default(), 45).is_ok());
        // Unknown page counts are not refused.
        assert!(decide(&rules(), &[], &job(None), &big, 50).is_ok());
    }
}
