//! What each queue is advertised as: its DNS-SD service instance name,
//! service type and subtypes, and the TXT keys IPP Everywhere (PWG
//! 5100.14 §4.2) and Apple's Bonjour Printing specification ask for. Pure:
//! the values are those Get-Printer-Attributes reports for the queue, so
//! what a workstation lists and what it then asks agree.

use crate::format;
use crate::ipp::printer_attrs::{URF_SUPPORTED, make_and_model, printer_uuid};
use crate::ipp::template::{MEDIA_SUPPORTED, SIDES};
use crate::queue::Queue;

/// Longest DNS-SD instance name, in bytes (one DNS label).
pub const MAX_NAME_BYTES: usize = 63;
/// Longest TXT string (key, `=`, value), in bytes.
pub const MAX_TXT_BYTES: usize = 255;

/// How the IPP listener is reached, for every queue's record.
#[derive(Debug, Clone)]
pub struct Listener {
    /// The port it listens on.
    pub port: u16,
    /// It speaks TLS only (`ipps://`).
    pub tls: bool,
    /// `[ipp] authentication` asks for passwords.
    pub basic: bool,
    /// The release app's address, for `adminurl`.
    pub admin_url: Option<String>,
}

/// One queue's DNS-SD service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Service {
    /// The instance name workstations show.
    pub name: String,
    /// `_ipp._tcp`, or `_ipps._tcp` for a TLS listener (plain IPP is then
    /// not served, so it is not advertised).
    pub service_type: &'static str,
    /// `_print` (IPP Everywhere) and `_universal` (AirPrint) subtypes.
    pub subtypes: Vec<String>,
    /// The listener's port.
    pub port: u16,
    /// TXT strings, `key=value`.
    pub txt: Vec<String>,
}

/// The service of `queue` at `site`, named from `template` (`{queue}`,
/// `{site}`).
pub fn service(queue: &Queue, site: &str, template: &str, listener: &Listener) -> Service {
    let service_type = if listener.tls {
        "_ipps._tcp"
    } else {
        "_ipp._tcp"
    };
    Service {
        name: instance_name(template, &queue.name, site),
        service_type,
        subtypes: ["_print", "_universal"]
            .iter()
            .map(|sub| format!("{sub}._sub.{service_type}"))
            .collect(),
        port: listener.port,
        txt: txt(queue, site, listener),
    }
}

/// The instance name from the template, cut to one DNS label on a
/// character boundary.
pub fn instance_name(template: &str, queue: &str, site: &str) -> String {
    let name = template.replace("{queue}", queue).replace("{site}", site);
    truncate(name.trim(), MAX_NAME_BYTES).to_owned()
}

fn txt(queue: &Queue, site: &str, listener: &Listener) -> Vec<String> {
    let uuid = printer_uuid(site, &queue.name);
    let uuid = uuid.trim_start_matches("urn:uuid:");
    let duplex = SIDES.iter().any(|s| s.starts_with("two-sided"));
    let mut keys = vec![
        ("txtvers", "1".to_owned()),
        ("qtotal", "1".to_owned()),
        ("rp", queue.path().trim_start_matches('/').to_owned()),
        ("ty", make_and_model(queue)),
        ("product", "(Branch print appliance)".to_owned()),
        ("note", queue.location.clone()),
        ("pdl", format::SUPPORTED.join(",")),
        ("URF", URF_SUPPORTED.join(",")),
        ("Color", "T".to_owned()),
        ("Duplex", if duplex { "T" } else { "F" }.to_owned()),
        ("kind", "document".to_owned()),
        ("PaperMax", paper_max().to_owned()),
        ("UUID", uuid.to_owned()),
        (
            "air",
            if listener.basic {
                "username,password"
            } else {
                "none"
            }
            .to_owned(),
        ),
    ];
    if listener.tls {
        keys.push(("TLS", "1.2".to_owned()));
    }
    if let Some(url) = &listener.admin_url {
        keys.push(("adminurl", url.clone()));
    }
    keys.into_iter()
        .map(|(key, value)| {
            let room = MAX_TXT_BYTES - key.len() - 1;
            format!("{key}={}", truncate(&value, room))
        })
        .collect()
}

/// The largest paper the queues take, in the spec's classes.
fn paper_max() -> &'static str {
    let longest = MEDIA_SUPPORTED
        .iter()
        .map(|&(_, _, y)| y)
        .max()
        .unwrap_or(0);
    // Lengths in hundredths of a millimetre: A4, legal, ledger, A2.
    match longest {
        0..=29699 => "<legal-A4",
        29700..=35560 => "legal-A4",
        35561..=43180 => "tabloid-A3",
        43181..=59400 => "isoC-A2",
        _ => ">isoC-A2",
    }
}

fn truncate(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let end = (0..=max)
        .rev()
        .find(|&i| text.is_char_boundary(i))
        .unwrap_or(0);
    &text[..end]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::queue::Queues;

    fn queues() -> Queues {
        let config: Config = toml::from_str(
            "site = \"branch-1\"\n[[printer]]\nid = \"lobby\"\nuri = \"ipp://p/ipp/print\"\n\
             [[queue]]\nname = \"secure\"\nkind = \"pull\"\ndefault = true\nlocation = \"Ground floor\"\n\
             [[queue]]\nname = \"lobby-direct\"\nkind = \"direct\"\nprinter = \"lobby\"\n",
        )
        .unwrap();
        Queues::from_config(&config)
    }

    fn listener(tls: bool, basic: bool) -> Listener {
        Listener {
            port: 631,
            tls,
            basic,
            admin_url: Some("http://box.local:8080/".into()),
        }
    }

    fn key<'a>(service: &'a Service, key: &str) -> Option<&'a str> {
        service
            .txt
            .iter()
            .find_map(|t| t.strip_prefix(key)?.strip_prefix('='))
    }

    #[test]
    fn a_plain_queue_is_ipp_with_the_everywhere_keys() {
        let queues = queues();
        let queue = queues.get("secure").unwrap();
        let service = service(
            queue,
            "branch-1",
            "{queue} @ {site}",
            &listener(false, false),
        );
        assert_eq!(service.name, "secure @ branch-1");
        assert_eq!(service.service_type, "_ipp._tcp");
        assert_eq!(
            service.subtypes,
            ["_print._sub._ipp._tcp", "_universal._sub._ipp._tcp"]
        );
        assert_eq!(service.txt[0], "txtvers=1", "txtvers comes first");
        assert_eq!(key(&service, "rp"), Some("ipp/print/secure"));
        assert_eq!(key(&service, "note"), Some("Ground floor"));
        assert_eq!(key(&service, "air"), Some("none"));
        assert_eq!(key(&service, "TLS"), None);
        assert_eq!(key(&service, "PaperMax"), Some("tabloid-A3"));
        assert_eq!(key(&service, "adminurl"), Some("http://box.local:8080/"));
        assert!(key(&service, "pdl").unwrap().contains("application/pdf"));
        assert!(key(&service, "pdl").unwrap().contains("image/urf"));
        assert_eq!(
            key(&service, "URF"),
            Some("V1.4,CP1,DM1,PQ3-4-5,RS300-600,SRGB24,W8")
        );
        let uuid = key(&service, "UUID").unwrap();
        assert_eq!(
            Some(uuid),
            printer_uuid("branch-1", "secure").strip_prefix("urn:uuid:")
        );
        assert!(service.txt.iter().all(|t| !t.starts_with("mopria")));
    }

    #[test]
    fn a_tls_queue_with_passwords_says_so() {
        let queues = queues();
        let queue = queues.get("lobby-direct").unwrap();
        let service = service(queue, "branch-1", "{queue}", &listener(true, true));
        assert_eq!(service.service_type, "_ipps._tcp");
        assert_eq!(service.subtypes[0], "_print._sub._ipps._tcp");
        assert_eq!(key(&service, "TLS"), Some("1.2"));
        assert_eq!(key(&service, "air"), Some("username,password"));
        assert_eq!(
            key(&service, "ty"),
            Some("Branch print appliance (queue for lobby)")
        );
    }

    #[test]
    fn names_and_strings_fit_their_dns_limits() {
        let long = "Zweigstelle Überlingen am Bodensee, drittes Obergeschoss, Flur Süd";
        let name = instance_name("{queue} @ {site}", "secure", long);
        assert!(name.len() <= MAX_NAME_BYTES && name.starts_with("secure @ Zweig"));
        assert!(name.is_char_boundary(name.len()));
        let queues = queues();
        let service = service(
            queues.get("secure").unwrap(),
            long,
            "{site}",
            &listener(true, true),
        );
        assert!(service.txt.iter().all(|t| t.len() <= MAX_TXT_BYTES));
    }
}
