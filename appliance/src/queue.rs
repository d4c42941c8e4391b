//! Print queues and the URIs they are served at.
//!
//! A queue `NAME` answers at `/ipp/print/NAME` (IPP Everywhere style) and
//! `/printers/NAME` (what CUPS clients send); the default queue also answers
//! at `/ipp/print` and `/`. Jobs are `/ipp/print/NAME/jobs/ID`. Routing is a
//! pure function of the path, so it is tested without sockets.

use crate::config::{Config, PoolConfig, PrinterConfig, QueueConfig, QueueKind};

/// One queue as served.
#[derive(Debug, Clone)]
pub struct Queue {
    /// Name, as in its URI.
    pub name: String,
    /// Pull (held for release) or direct (forwarded at once).
    pub kind: QueueKind,
    /// Whether `/ipp/print` is this queue.
    pub is_default: bool,
    /// For direct queues: the printer jobs go to.
    pub printer: Option<PrinterConfig>,
    /// For direct queues to a pool: the pool whose members print the jobs.
    pub pool: Option<PoolConfig>,
    /// `printer-info`.
    pub info: String,
    /// `printer-location`.
    pub location: String,
}

impl Queue {
    /// The canonical path, `/ipp/print/NAME`.
    pub fn path(&self) -> String {
        format!("/ipp/print/{}", self.name)
    }

    /// The path of one of its jobs.
    pub fn job_path(&self, ipp_job_id: i32) -> String {
        format!("/ipp/print/{}/jobs/{ipp_job_id}", self.name)
    }
}

/// What a request path or URI names.
#[derive(Debug, Clone, Copy)]
pub enum Target<'a> {
    /// A queue.
    Queue(&'a Queue),
    /// A job of a queue, by IPP job-id.
    Job(&'a Queue, i32),
}

/// All queues of the appliance.
#[derive(Debug, Clone)]
pub struct Queues {
    queues: Vec<Queue>,
}

impl Queues {
    /// Builds the queue table from a validated config.
    pub fn from_config(config: &Config) -> Queues {
        let queues = config
            .queues
            .iter()
            .map(|q: &QueueConfig| Queue {
                name: q.name.clone(),
                kind: q.kind,
                is_default: q.default,
                printer: q
                    .printer
                    .as_ref()
                    .and_then(|id| config.printers.iter().find(|p| &p.id == id).cloned()),
                pool: q
                    .printer
                    .as_ref()
                    .and_then(|id| config.pools.iter().find(|p| &p.id == id).cloned()),
                info: q.info.clone().unwrap_or_else(|| match q.kind {
                    QueueKind::Pull => format!(
                        "Secure print queue {}: jobs wait until you release them at a printer",
                        q.name
                    ),
                    QueueKind::Direct => format!("Print queue {}", q.name),
                }),
                location: q.location.clone().unwrap_or_else(|| config.site.clone()),
            })
            .collect();
        Queues { queues }
    }

    /// Every queue, in config order.
    pub fn all(&self) -> &[Queue] {
        &self.queues
    }

    /// The queue with this name.
    pub fn get(&self, name: &str) -> Option<&Queue> {
        self.queues.iter().find(|q| q.name == name)
    }

    /// The default queue: the one marked so, else the first.
    pub fn default_queue(&self) -> Option<&Queue> {
        self.queues
            .iter()
            .find(|q| q.is_default)
            .or_else(|| self.queues.first())
    }

    /// The printer or pool a direct queue's jobs go to (to wake it).
    pub fn destination(queue: &Queue) -> Option<&str> {
        queue
            .printer
            .as_ref()
            .map(|p| p.id.as_str())
            .or(queue.pool.as_ref().map(|p| p.id.as_str()))
    }

    /// Direct queues that forward to printer `id`.
    pub fn feeding(&self, printer_id: &str) -> Vec<String> {
        self.queues
            .iter()
            .filter(|q| q.printer.as_ref().is_some_and(|p| p.id == printer_id))
            .map(|q| q.name.clone())
            .collect()
    }

    /// Resolves a path (of a request, a `printer-uri` or a `job-uri`).
    pub fn route(&self, path: &str) -> Option<Target<'_>> {
        let path = path.split(['?', '#']).next().unwrap_or(path);
        let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
        match segments.as_slice() {
            [] | ["ipp", "print"] => self.default_queue().map(Target::Queue),
            ["ipp", "print", name] | ["printers", name] => self.get(name).map(Target::Queue),
            ["ipp", "print", name, "jobs", id] | ["printers", name, "jobs", id] => {
                let queue = self.get(name)?;
                let id = id.parse::<i32>().ok().filter(|id| *id > 0)?;
                Some(Target::Job(queue, id))
            }
            _ => None,
        }
    }
}

/// The path part of an absolute URI (`ipp://host:port/path` → `/path`).
pub fn uri_path(uri: &str) -> Option<&str> {
    let (_, rest) = uri.split_once("://")?;
    Some(rest.find('/').map_or("/", |i| &rest[i..]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn queues() -> Queues {
        let config = Config::parse(
            r#"
            [[printer]]
            id = "lobby"
            uri = "ipp://127.0.0.1:8632/ipp/print"
            [[queue]]
            name = "secure"
            kind = "pull"
            default = true
            [[queue]]
            name = "lobby-direct"
            kind = "direct"
            printer = "lobby"
            "#,
            Path::new("t.toml"),
        )
        .unwrap();
        Queues::from_config(&config)
    }

    fn name(target: Option<Target<'_>>) -> Option<(String, Option<i32>)> {
        target.map(|t| match t {
            Target::Queue(q) => (q.name.clone(), None),
            Target::Job(q, id) => (q.name.clone(), Some(id)),
        })
    }

    #[test]
    fn every_form_of_a_queue_uri_routes() {
        let q = queues();
        let secure = Some(("secure".to_owned(), None));
        assert_eq!(name(q.route("/")), secure);
        assert_eq!(name(q.route("/ipp/print")), secure);
        assert_eq!(name(q.route("/ipp/print/secure")), secure);
        assert_eq!(name(q.route("/printers/secure")), secure);
        assert_eq!(
            name(q.route("/printers/lobby-direct/")),
            Some(("lobby-direct".to_owned(), None))
        );
        assert_eq!(name(q.route("/ipp/print/nope")), None);
        assert_eq!(name(q.route("/etc/passwd")), None);
    }

    #[test]
    fn job_uris_route_to_their_queue() {
        let q = queues();
        assert_eq!(
            name(q.route("/ipp/print/secure/jobs/12")),
            Some(("secure".to_owned(), Some(12)))
        );
        assert_eq!(name(q.route("/ipp/print/secure/jobs/0")), None);
        assert_eq!(name(q.route("/ipp/print/secure/jobs/x")), None);
        let queue = q.get("secure").unwrap();
        assert_eq!(
            name(q.route(&queue.job_path(3))),
            Some(("secure".to_owned(), Some(3)))
        );
    }

    #[test]
    fn uri_paths() {
        assert_eq!(
            uri_path("ipp://localhost:631/printers/x"),
            Some("/printers/x")
        );
        assert_eq!(uri_path("ipp://localhost:631"), Some("/"));
        assert_eq!(uri_path("not a uri"), None);
    }

    #[test]
    fn direct_queues_know_their_printer() {
        let q = queues();
        assert_eq!(q.feeding("lobby"), ["lobby-direct"]);
        assert!(q.get("secure").unwrap().printer.is_none());
    }
}
