//! Pure decisions about a hot folder's entries: which are files to take,
//! whose job each one is, and what a finished file is called in `done/` or
//! `rejected/`.

use std::path::{Component, Path, PathBuf};

use crate::config::{HotFolderConfig, OwnerFrom};

/// Where files wait between being taken and their job's commit; a file
/// here is recognised after a crash by the job id its directory is named
/// after.
pub const TAKING: &str = ".taking";
/// Where taken files go with `keep_done`.
pub const DONE: &str = "done";
/// Where files that cannot become jobs go, each with a `.reason.txt`.
pub const REJECTED: &str = "rejected";

/// Who owns the files dropped into a folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OwnerRule {
    /// Every file is this user's.
    Fixed(String),
    /// `path/OWNER/file`.
    Directory,
    /// `path/OWNER<separator>rest`.
    FileName(String),
}

impl OwnerRule {
    /// The rule a folder's configuration asks for.
    pub fn of(folder: &HotFolderConfig) -> OwnerRule {
        match (folder.owner_from, &folder.owner) {
            (Some(OwnerFrom::Directory), _) => OwnerRule::Directory,
            (Some(OwnerFrom::FileName), _) => OwnerRule::FileName(folder.owner_separator.clone()),
            (None, owner) => OwnerRule::Fixed(owner.clone().unwrap_or_default()),
        }
    }

    /// How deep files sit below the folder: owners' directories put them
    /// one level down.
    pub fn depth(&self) -> usize {
        match self {
            OwnerRule::Directory => 2,
            OwnerRule::Fixed(_) | OwnerRule::FileName(_) => 1,
        }
    }
}

/// A dropped file's job: whose it is and what it is called.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Naming {
    /// The job's owner.
    pub owner: String,
    /// `job-name` (and `document-name`): the file's name, less its owner.
    pub job_name: String,
}

/// Names the job of the file at `relative` (its path below the folder),
/// or says why it has no owner.
pub fn name(rule: &OwnerRule, relative: &Path) -> Result<Naming, String> {
    let parts = components(relative).ok_or_else(|| "its path is not a plain name".to_owned())?;
    match (rule, parts.as_slice()) {
        (OwnerRule::Fixed(owner), [file]) => Ok(Naming {
            owner: owner.clone(),
            job_name: (*file).to_owned(),
        }),
        (OwnerRule::Directory, [owner, file]) => Ok(Naming {
            owner: (*owner).to_owned(),
            job_name: (*file).to_owned(),
        }),
        (OwnerRule::Directory, _) => Err(
            "files go into a directory named after their owner (OWNER/file.pdf); this one is not in one"
                .to_owned(),
        ),
        (OwnerRule::FileName(separator), [file]) => match file.split_once(separator.as_str()) {
            Some((owner, rest)) if !owner.trim().is_empty() && !rest.is_empty() => Ok(Naming {
                owner: owner.to_owned(),
                job_name: rest.to_owned(),
            }),
            _ => Err(format!(
                "its name does not start with its owner and {separator:?} (alice{separator}scan.pdf)"
            )),
        },
        _ => Err("it is not where this folder's files go".to_owned()),
    }
}

fn components(relative: &Path) -> Option<Vec<&str>> {
    relative
        .components()
        .map(|c| match c {
            Component::Normal(part) => part.to_str(),
            _ => None,
        })
        .collect()
}

/// Whether an entry named `name` may be a dropped file, at depth `level`
/// (1 = directly in the folder). Hidden names, editors' and downloads'
/// temporary names, and the appliance's own directories are not.
pub fn is_candidate(name: &str, level: usize) -> bool {
    let temporary = name.starts_with('.')
        || name.ends_with('~')
        || [".tmp", ".part", ".partial", ".crdownload"]
            .iter()
            .any(|suffix| name.to_ascii_lowercase().ends_with(suffix));
    let reserved = level == 1 && [DONE, REJECTED].contains(&name);
    !temporary && !reserved
}

/// A name for `relative` in a directory where `taken` says which names
/// exist: the same name, else `name (2).ext`, `name (3).ext`, ...
pub fn free_name(relative: &Path, taken: impl Fn(&Path) -> bool) -> PathBuf {
    if !taken(relative) {
        return relative.to_owned();
    }
    let stem = relative
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let extension = relative
        .extension()
        .map(|e| format!(".{}", e.to_string_lossy()))
        .unwrap_or_default();
    (2u64..)
        .map(|n| relative.with_file_name(format!("{stem} ({n}){extension}")))
        .find(|candidate| !taken(candidate))
        .unwrap_or_else(|| relative.to_owned())
}

/// The reason file written beside a rejected file.
pub fn reason_file(rejected: &Path) -> PathBuf {
    let mut name = rejected.file_name().unwrap_or_default().to_owned();
    name.push(".reason.txt");
    rejected.with_file_name(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owners_come_from_the_rule() {
        let fixed = OwnerRule::Fixed("erp".into());
        assert_eq!(
            name(&fixed, Path::new("Invoice 42.pdf")),
            Ok(Naming {
                owner: "erp".into(),
                job_name: "Invoice 42.pdf".into()
            })
        );
        assert_eq!(
            name(&OwnerRule::Directory, Path::new("alice/scan.pdf")),
            Ok(Naming {
                owner: "alice".into(),
                job_name: "scan.pdf".into()
            })
        );
        let by_name = OwnerRule::FileName("_".into());
        assert_eq!(
            name(&by_name, Path::new("bob_weekly_report.pdf")),
            Ok(Naming {
                owner: "bob".into(),
                job_name: "weekly_report.pdf".into()
            })
        );
    }

    #[test]
    fn files_without_an_owner_say_why() {
        let by_name = OwnerRule::FileName("_".into());
        for file in ["report.pdf", "_report.pdf", "bob_"] {
            let why = name(&by_name, Path::new(file)).unwrap_err();
            assert!(why.contains("alice_scan.pdf"), "{file}: {why}");
        }
        let why = name(&OwnerRule::Directory, Path::new("scan.pdf")).unwrap_err();
        assert!(why.contains("OWNER/"), "{why}");
        assert!(name(&OwnerRule::Fixed("x".into()), Path::new("../x.pdf")).is_err());
    }

    #[test]
    fn temporary_and_reserved_names_are_left_alone() {
        for skipped in [
            ".scan.pdf.swp",
            "scan.pdf~",
            "scan.PART",
            "x.tmp",
            "done",
            "rejected",
        ] {
            assert!(!is_candidate(skipped, 1), "{skipped}");
        }
        assert!(is_candidate("scan.pdf", 1));
        // An owner's own file may be called `done`.
        assert!(is_candidate("done", 2));
    }

    #[test]
    fn free_names_number_the_copies() {
        let existing = [Path::new("scan.pdf"), Path::new("scan (2).pdf")];
        let taken = |p: &Path| existing.contains(&p);
        assert_eq!(
            free_name(Path::new("other.pdf"), taken),
            Path::new("other.pdf")
        );
        assert_eq!(
            free_name(Path::new("scan.pdf"), taken),
            Path::new("scan (3).pdf")
        );
        assert_eq!(
            free_name(Path::new("alice/scan.pdf"), |p| p
                == Path::new("alice/scan.pdf")),
            Path::new("alice/scan (2).pdf")
        );
        assert_eq!(
            reason_file(Path::new("a/x.doc")),
            Path::new("a/x.doc.reason.txt")
        );
    }
}
