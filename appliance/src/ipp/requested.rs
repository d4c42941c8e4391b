//! `requested-attributes`: which attributes a client asked for, including
//! the group names `all`, `printer-description`, `job-template` and
//! `job-description` (RFC 8011 sections 4.2.5 and 4.3.4).

use super::template;

/// A parsed `requested-attributes` list.
#[derive(Debug, Clone)]
pub struct Requested {
    all: bool,
    template: bool,
    description: bool,
    names: Vec<String>,
}

impl Requested {
    /// Everything (what an absent list means for most operations).
    pub fn everything() -> Requested {
        Requested {
            all: true,
            template: true,
            description: true,
            names: Vec::new(),
        }
    }

    /// From the request's keywords; `default` applies when the list is empty.
    pub fn from_keywords(keywords: Vec<String>, default: Requested) -> Requested {
        if keywords.is_empty() {
            return default;
        }
        let has = |k: &str| keywords.iter().any(|x| x == k);
        Requested {
            all: has("all"),
            template: has("job-template"),
            description: has("printer-description") || has("job-description"),
            names: keywords,
        }
    }

    /// Only these names.
    pub fn only(names: &[&str]) -> Requested {
        Requested::from_keywords(
            names.iter().map(|s| (*s).to_owned()).collect(),
            Requested::everything(),
        )
    }

    /// Whether attribute `name` should be returned.
    pub fn wants(&self, name: &str) -> bool {
        if self.all || self.names.iter().any(|n| n == name) {
            return true;
        }
        if is_template_attribute(name) {
            self.template
        } else {
            self.description
        }
    }
}

/// Job template attributes and their printer counterparts
/// (`xxx`, `xxx-default`, `xxx-supported`, `xxx-ready`).
fn is_template_attribute(name: &str) -> bool {
    let base = ["-default", "-supported", "-ready"]
        .iter()
        .find_map(|suffix| name.strip_suffix(suffix))
        .unwrap_or(name);
    template::ACCEPTED.contains(&base)
        || matches!(
            base,
            "media-size" | "media-source" | "media-type" | "page-ranges"
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_names_select_groups() {
        let template = Requested::only(&["job-template"]);
        assert!(template.wants("copies-supported"));
        assert!(template.wants("media"));
        assert!(!template.wants("printer-name"));
        let description = Requested::only(&["printer-description"]);
        assert!(description.wants("printer-name"));
        assert!(!description.wants("sides-default"));
        let one = Requested::only(&["printer-uri-supported"]);
        assert!(one.wants("printer-uri-supported"));
        assert!(!one.wants("printer-name"));
        assert!(Requested::only(&["all"]).wants("anything"));
    }

    #[test]
    fn empty_list_means_the_default() {
        let r = Requested::from_keywords(Vec::new(), Requested::only(&["job-id", "job-uri"]));
        assert!(r.wants("job-id"));
        assert!(!r.wants("job-name"));
    }
}
