//! The printer attributes of a queue (Get-Printer-Attributes,
//! CUPS-Get-Printers): what the queue accepts and how to reach it.
//!
//! A queue is a print *server* in front of office MFDs: it stores documents
//! as sent and passes job template attributes through to the device, so the
//! template values advertised are the common office ones that the output
//! stage forwards unchanged. Pure: built from the queue, the request's host
//! and a few live counts.

use ipp::prelude::*;
use sha2::{Digest, Sha256};

use super::compression;
use super::request::SUPPORTED_OPERATIONS;
use super::requested::Requested;
use super::template::{
    self, COLOR_MODES, CONTENT_OPTIMIZE, DOCUMENT_HANDLING, HOLD_UNTIL, MAX_COPIES,
    MEDIA_SUPPORTED, OUTPUT_BINS, RENDERING_INTENTS, RESOLUTIONS, SCALING, SIDES,
};
use crate::config::QueueKind;
use crate::format;
use crate::ipp_wire::values::*;
use crate::printer::Supplies;
use crate::queue::Queue;

/// Live facts the attributes report.
#[derive(Debug, Clone)]
pub struct PrinterStatus {
    /// The URI prefix the client used (`ipp://host:port` or
    /// `ipps://host:port`), for the URIs returned.
    pub base: String,
    /// The listener speaks TLS only.
    pub tls: bool,
    /// `uri-authentication-supported`: `requesting-user-name` or `basic`.
    pub authentication: &'static str,
    /// Site name (part of `printer-uuid`).
    pub site: String,
    /// Jobs not yet finished on this queue.
    pub queued_job_count: u64,
    /// Jobs being sent to a printer right now.
    pub processing: bool,
    /// Why the queue's printer is not taking jobs, if it is not.
    pub state_message: Option<String>,
    /// Seconds since the Unix epoch (`printer-up-time`, as CUPS reports it).
    pub now_secs: i64,
    /// When the queue's state last changed, on the same clock.
    pub state_since_secs: i64,
    /// When its configuration was loaded, on the same clock.
    pub config_since_secs: i64,
    /// `ipp.max_document_bytes`.
    pub max_document_bytes: u64,
    /// The data disk is full: jobs are refused (`spool-area-full`).
    pub spool_area_full: bool,
    /// `ipp.document_timeout_secs` (`multiple-operation-time-out`).
    pub document_timeout_secs: u64,
    /// The queue's printer's supply levels, where known (direct queues).
    pub supplies: Option<Supplies>,
}

/// The queue's printer attributes, filtered by `requested`.
pub fn printer_attributes(
    queue: &Queue,
    status: &PrinterStatus,
    requested: &Requested,
) -> Vec<IppAttribute> {
    let uri_value = uri(&format!("{}{}", status.base, queue.path()));
    // The status page is served on the same listener, over HTTP(S).
    let web = if status.tls { "https" } else { "http" };
    let authority = status.base.split_once("://").map_or("", |(_, a)| a);
    let more_info = uri(&format!("{web}://{authority}{}", queue.path()));
    let media_sizes: Vec<IppValue> = MEDIA_SUPPORTED
        .iter()
        .map(|(_, x, y)| media_size(*x, *y))
        .collect();
    let default_media = MEDIA_SUPPORTED[0];
    let k_octets_max = i32::try_from(status.max_document_bytes.div_ceil(1024)).unwrap_or(i32::MAX);
    let uptime = i32::try_from(status.now_secs).unwrap_or(i32::MAX).max(1);
    let hold_default = match queue.kind {
        QueueKind::Pull => "indefinite",
        QueueKind::Direct => "no-hold",
    };
    let make_and_model = make_and_model(queue);
    let state_reasons = if status.spool_area_full {
        "spool-area-full"
    } else if status.state_message.is_some() {
        "other-warning"
    } else {
        "none"
    };
    let full_message = "Not accepting jobs: the appliance's disk is full";

    let all: Vec<(&str, IppValue)> = vec![
        ("printer-uri-supported", uri_value),
        (
            "uri-security-supported",
            keyword(if status.tls { "tls" } else { "none" }),
        ),
        (
            "uri-authentication-supported",
            keyword(status.authentication),
        ),
        ("printer-name", name(&queue.name)),
        ("printer-info", text(&queue.info)),
        ("printer-location", text(&queue.location)),
        ("printer-make-and-model", text(&make_and_model)),
        ("printer-more-info", more_info),
        (
            "printer-icons",
            set(ICON_SIZES
                .iter()
                .map(|size| uri(&format!("{web}://{authority}{}", icon_path(*size))))
                .collect()),
        ),
        // Where the queue is, in the sense of geo: unknown (a queue is
        // not one place: a pull queue prints at any printer).
        (
            "printer-geo-location",
            IppValue::Other {
                tag: UNKNOWN_TAG,
                data: bytes::Bytes::new(),
            },
        ),
        ("printer-organization", text("")),
        ("printer-organizational-unit", text(&status.site)),
        (
            "printer-get-attributes-supported",
            keyword("document-format"),
        ),
        ("preferred-attributes-supported", IppValue::Boolean(false)),
        (
            "printer-uuid",
            uri(&printer_uuid(&status.site, &queue.name)),
        ),
        (
            "printer-state",
            enumeration(if status.processing { 4 } else { 3 }),
        ),
        ("printer-state-reasons", keyword(state_reasons)),
        (
            "printer-state-message",
            text(match (status.spool_area_full, queue.kind) {
                (true, _) => full_message,
                (false, _) if status.state_message.is_some() => {
                    status.state_message.as_deref().unwrap_or_default()
                }
                (false, QueueKind::Pull) => "Accepting jobs; release them at any printer",
                (false, QueueKind::Direct) => "Accepting jobs",
            }),
        ),
        (
            "printer-is-accepting-jobs",
            IppValue::Boolean(!status.spool_area_full),
        ),
        (
            "queued-job-count",
            IppValue::Integer(i32::try_from(status.queued_job_count).unwrap_or(i32::MAX)),
        ),
        ("printer-up-time", IppValue::Integer(uptime)),
        ("printer-current-time", date_time(status.now_secs * 1000)),
        (
            "printer-state-change-time",
            IppValue::Integer(i32::try_from(status.state_since_secs).unwrap_or(i32::MAX)),
        ),
        (
            "printer-state-change-date-time",
            date_time(status.state_since_secs * 1000),
        ),
        (
            "printer-config-change-time",
            IppValue::Integer(i32::try_from(status.config_since_secs).unwrap_or(i32::MAX)),
        ),
        (
            "printer-config-change-date-time",
            date_time(status.config_since_secs * 1000),
        ),
        ("printer-device-id", text(&device_id(format::SUPPORTED))),
        ("ipp-versions-supported", keywords(&["1.1", "2.0"])),
        (
            "operations-supported",
            enums(
                &SUPPORTED_OPERATIONS
                    .iter()
                    .filter(|op| **op != Operation::IdentifyPrinter || identifies(queue))
                    .map(|op| *op as i32)
                    .collect::<Vec<_>>(),
            ),
        ),
        ("multiple-document-jobs-supported", IppValue::Boolean(false)),
        (
            "multiple-operation-time-out",
            IppValue::Integer(i32::try_from(status.document_timeout_secs).unwrap_or(i32::MAX)),
        ),
        ("multiple-operation-time-out-action", keyword("abort-job")),
        ("charset-configured", charset("utf-8")),
        (
            "charset-supported",
            set(vec![charset("utf-8"), charset("us-ascii")]),
        ),
        ("natural-language-configured", language("en")),
        ("generated-natural-language-supported", language("en")),
        ("document-format-default", mime(format::DEFAULT)),
        ("document-format-supported", mimes(format::SUPPORTED)),
        ("compression-supported", keywords(&compression::SUPPORTED)),
        ("pdl-override-supported", keyword("attempted")),
        ("job-k-octets-supported", range(0, k_octets_max)),
        (
            "job-creation-attributes-supported",
            keywords(template::ACCEPTED),
        ),
        (
            "which-jobs-supported",
            keywords(&[
                "completed",
                "not-completed",
                "aborted",
                "all",
                "canceled",
                "pending",
                "pending-held",
                "processing",
                "processing-stopped",
            ]),
        ),
        (
            "job-privacy-attributes",
            keywords(&[
                "job-name",
                "job-originating-user-name",
                "document-name-supplied",
            ]),
        ),
        ("job-privacy-scope", keyword("owner")),
        ("job-ids-supported", IppValue::Boolean(true)),
        ("color-supported", IppValue::Boolean(true)),
        // Nominal office-MFD speeds: a queue has no engine of its own.
        ("pages-per-minute", IppValue::Integer(30)),
        ("pages-per-minute-color", IppValue::Integer(30)),
        ("copies-default", IppValue::Integer(1)),
        ("copies-supported", range(1, MAX_COPIES)),
        ("finishings-default", enumeration(3)),
        ("finishings-supported", enumeration(3)),
        ("job-hold-until-default", keyword(hold_default)),
        ("job-hold-until-supported", keywords(HOLD_UNTIL)),
        ("job-priority-default", IppValue::Integer(50)),
        ("job-priority-supported", IppValue::Integer(100)),
        ("job-sheets-default", keyword("none")),
        ("job-sheets-supported", keyword("none")),
        ("media-default", keyword(default_media.0)),
        (
            "media-supported",
            keywords(&MEDIA_SUPPORTED.iter().map(|m| m.0).collect::<Vec<_>>()),
        ),
        (
            "media-ready",
            keywords(&[MEDIA_SUPPORTED[0].0, MEDIA_SUPPORTED[1].0]),
        ),
        (
            "media-col-default",
            media_col(default_media.1, default_media.2),
        ),
        (
            "media-col-ready",
            set(vec![
                media_col(MEDIA_SUPPORTED[0].1, MEDIA_SUPPORTED[0].2),
                media_col(MEDIA_SUPPORTED[1].1, MEDIA_SUPPORTED[1].2),
            ]),
        ),
        (
            "media-col-supported",
            keywords(&["media-size", "media-source", "media-type"]),
        ),
        ("media-size-supported", set(media_sizes)),
        (
            "media-col-database",
            set(MEDIA_SUPPORTED
                .iter()
                .map(|(_, x, y)| media_col(*x, *y))
                .collect()),
        ),
        ("media-source-supported", keyword("auto")),
        ("media-type-supported", keyword("stationery")),
        (
            "multiple-document-handling-default",
            keyword(DOCUMENT_HANDLING[0]),
        ),
        (
            "multiple-document-handling-supported",
            keywords(DOCUMENT_HANDLING),
        ),
        ("number-up-default", IppValue::Integer(1)),
        ("number-up-supported", IppValue::Integer(1)),
        ("orientation-requested-default", enumeration(3)),
        ("orientation-requested-supported", enums(&[3, 4, 5, 6])),
        ("output-bin-default", keyword(OUTPUT_BINS[0])),
        ("output-bin-supported", keywords(OUTPUT_BINS)),
        ("page-ranges-supported", IppValue::Boolean(true)),
        ("print-color-mode-default", keyword("auto")),
        ("print-color-mode-supported", keywords(COLOR_MODES)),
        ("overrides-supported", keywords(template::OVERRIDE_MEMBERS)),
        ("print-content-optimize-default", keyword("auto")),
        (
            "print-content-optimize-supported",
            keywords(CONTENT_OPTIMIZE),
        ),
        ("print-rendering-intent-default", keyword("auto")),
        (
            "print-rendering-intent-supported",
            keywords(RENDERING_INTENTS),
        ),
        // What office MFDs leave unprinted at each edge (4.23 mm): a queue
        // cannot promise borderless printing on whichever device prints.
        ("media-bottom-margin-supported", IppValue::Integer(MARGIN)),
        ("media-left-margin-supported", IppValue::Integer(MARGIN)),
        ("media-right-margin-supported", IppValue::Integer(MARGIN)),
        ("media-top-margin-supported", IppValue::Integer(MARGIN)),
        ("print-quality-default", enumeration(4)),
        ("print-quality-supported", enums(&[3, 4, 5])),
        ("print-scaling-default", keyword("auto")),
        ("print-scaling-supported", keywords(SCALING)),
        ("printer-resolution-default", dpi(600, 600)),
        (
            "printer-resolution-supported",
            set(RESOLUTIONS.iter().map(|&r| dpi(r, r)).collect()),
        ),
        ("sides-default", keyword("one-sided")),
        ("sides-supported", keywords(SIDES)),
        (
            "pwg-raster-document-resolution-supported",
            set(RESOLUTIONS.iter().map(|&r| dpi(r, r)).collect()),
        ),
        ("pwg-raster-document-sheet-back", keyword("normal")),
        (
            "pwg-raster-document-type-supported",
            keywords(&["black_1", "sgray_8", "srgb_8"]),
        ),
        ("urf-supported", keywords(URF_SUPPORTED)),
    ];
    let mut all = all;
    // IPP Everywhere needs Identify-Printer, which a pull queue cannot do.
    if identifies(queue) {
        all.push(("identify-actions-default", keyword(IDENTIFY_DEFAULT)));
        all.push(("identify-actions-supported", keywords(IDENTIFY_ACTIONS)));
        all.push(("ipp-features-supported", keyword("ipp-everywhere")));
    } else {
        all.push(("ipp-features-supported", keyword("none")));
    }
    if let Some(supplies) = &status.supplies {
        let octets = |level: &Vec<u8>| IppValue::OctetString(bytes::Bytes::from(level.clone()));
        all.push((
            "printer-supply",
            set(supplies.levels.iter().map(octets).collect()),
        ));
        all.push((
            "printer-supply-description",
            set(supplies.descriptions.iter().map(|d| text(d)).collect()),
        ));
        if let Some(info) = &supplies.info_uri {
            all.push(("printer-supply-info-uri", uri(info)));
        }
    }
    all.into_iter()
        .filter(|(n, _)| requested.wants(n))
        .map(|(n, v)| attr(n, v))
        .collect()
}

/// `identify-actions-supported`, passed to the printer, which does what
/// it can of them.
pub const IDENTIFY_ACTIONS: &[&str] = &["display", "flash", "sound", "speak"];
/// `identify-actions-default`.
pub const IDENTIFY_DEFAULT: &str = "sound";

/// Whether Identify-Printer means something on `queue`: a direct queue to
/// an IPP printer, which is asked in turn. A pull queue prints at
/// whichever printer its user logs in at, and socket and LPD printers
/// cannot be asked, so theirs do not offer it.
pub fn identifies(queue: &Queue) -> bool {
    queue.kind == QueueKind::Direct
        && queue
            .printer
            .as_ref()
            .is_some_and(|p| p.uri.starts_with("ipp://") || p.uri.starts_with("ipps://"))
}

/// The out-of-band `unknown` value tag (RFC 8010 §3.5.2).
const UNKNOWN_TAG: u8 = 0x12;
/// Unprintable edge of the page, in hundredths of a millimetre.
const MARGIN: i32 = 423;
/// Sizes of the queue icons served (`printer-icons`: small, normal, large).
pub const ICON_SIZES: [u32; 3] = [48, 128, 512];

/// Where the icon of `size` pixels is served, on the IPP listener.
pub fn icon_path(size: u32) -> String {
    format!("/icons/printer-{size}.png")
}

/// The PNG served at [`icon_path`], if `path` is one.
pub fn icon(path: &str) -> Option<&'static [u8]> {
    match path {
        "/icons/printer-48.png" => Some(include_bytes!("../../web/icons/printer-48.png")),
        "/icons/printer-128.png" => Some(include_bytes!("../../web/icons/printer-128.png")),
        "/icons/printer-512.png" => Some(include_bytes!("../../web/icons/printer-512.png")),
        _ => None,
    }
}

/// `urf-supported`: what Apple raster documents may use.
pub const URF_SUPPORTED: &[&str] = &["V1.4", "CP1", "DM1", "PQ3-4-5", "RS300-600", "SRGB24", "W8"];

/// `printer-make-and-model`: what kind of queue this is.
pub fn make_and_model(queue: &Queue) -> String {
    match queue.kind {
        QueueKind::Pull => "Branch print appliance (secure release queue)".to_owned(),
        QueueKind::Direct => format!(
            "Branch print appliance (queue for {})",
            queue
                .printer
                .as_ref()
                .map_or("a printer", |p| p.id.as_str())
        ),
    }
}

fn media_size(x: i32, y: i32) -> IppValue {
    collection(vec![
        ("x-dimension", IppValue::Integer(x)),
        ("y-dimension", IppValue::Integer(y)),
    ])
}

/// The IEEE 1284 device ID of a queue (`printer-device-id`): what IPP
/// Everywhere clients and driverless CUPS match on, with the document
/// formats as `CMD:` languages.
pub fn device_id(formats: &[&str]) -> String {
    let languages: Vec<&str> = formats
        .iter()
        .filter_map(|f| match f.to_ascii_lowercase().as_str() {
            "application/pdf" => Some("PDF"),
            "application/pclm" => Some("PCLM"),
            "application/postscript" => Some("POSTSCRIPT"),
            "application/vnd.hp-pcl" => Some("PCL"),
            "image/pwg-raster" => Some("PWGRASTER"),
            "image/urf" => Some("URF"),
            "image/jpeg" => Some("JPEG"),
            _ => None,
        })
        .collect();
    format!(
        "MFG:Branch print appliance;MDL:Print queue;CMD:{};CLS:PRINTER;",
        languages.join(",")
    )
}

fn media_col(x: i32, y: i32) -> IppValue {
    collection(vec![
        ("media-size", media_size(x, y)),
        ("media-source", keyword("auto")),
        ("media-type", keyword("stationery")),
    ])
}

fn collection(members: Vec<(&str, IppValue)>) -> IppValue {
    IppValue::Collection(
        members
            .into_iter()
            .map(|(k, v)| (ipp::value::IppName::new_truncated(k), v))
            .collect(),
    )
}

/// A stable `urn:uuid:` for a queue, derived from site and queue name, so it
/// survives restarts and differs between sites.
pub fn printer_uuid(site: &str, queue: &str) -> String {
    let digest = Sha256::digest(format!("{site}/{queue}").as_bytes());
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    uuid::Builder::from_custom_bytes(bytes)
        .into_uuid()
        .urn()
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::queue::Queues;
    use std::path::Path;

    fn status() -> PrinterStatus {
        PrinterStatus {
            base: "ipp://127.0.0.1:8631".into(),
            tls: false,
            authentication: "requesting-user-name",
            site: "branch-1".into(),
            queued_job_count: 2,
            processing: false,
            state_message: None,
            now_secs: 1_700_000_000,
            state_since_secs: 1_699_999_000,
            config_since_secs: 1_699_990_000,
            max_document_bytes: 1 << 31,
            document_timeout_secs: 300,
            spool_area_full: false,
            supplies: None,
        }
    }

    fn queues() -> Queues {
        Queues::from_config(&Config::parse("", Path::new("t")).unwrap())
    }

    /// Every attribute of the default queue in the usual status.
    fn default_queue_attributes() -> Vec<IppAttribute> {
        let q = queues();
        printer_attributes(
            q.default_queue().unwrap(),
            &status(),
            &Requested::everything(),
        )
    }

    fn get<'a>(attrs: &'a [IppAttribute], name: &str) -> Option<&'a IppValue> {
        attrs
            .iter()
            .find(|a| a.name().as_str() == name)
            .map(|a| a.value())
    }

    #[test]
    fn uris_use_the_host_the_client_used() {
        let attrs = default_queue_attributes();
        assert_eq!(
            get(&attrs, "printer-uri-supported").and_then(as_str),
            Some("ipp://127.0.0.1:8631/ipp/print/secure")
        );
        assert_eq!(
            get(&attrs, "job-hold-until-default").and_then(as_str),
            Some("indefinite")
        );
        assert_eq!(get(&attrs, "queued-job-count"), Some(&IppValue::Integer(2)));
        assert_eq!(
            get(&attrs, "uri-security-supported").and_then(as_str),
            Some("none")
        );
    }

    #[test]
    fn a_tls_queue_with_basic_says_so_in_every_uri() {
        let q = queues();
        let status = PrinterStatus {
            base: "ipps://print.example:8632".into(),
            tls: true,
            authentication: "basic",
            ..status()
        };
        let attrs = printer_attributes(
            q.default_queue().unwrap(),
            &status,
            &Requested::everything(),
        );
        let text = |name| get(&attrs, name).and_then(as_str);
        assert_eq!(
            text("printer-uri-supported"),
            Some("ipps://print.example:8632/ipp/print/secure")
        );
        assert_eq!(
            text("printer-more-info"),
            Some("https://print.example:8632/ipp/print/secure")
        );
        assert_eq!(text("uri-security-supported"), Some("tls"));
        assert_eq!(text("uri-authentication-supported"), Some("basic"));
    }

    #[test]
    fn says_when_the_state_and_the_configuration_changed() {
        let attrs = default_queue_attributes();
        assert_eq!(
            get(&attrs, "printer-state-change-time"),
            Some(&IppValue::Integer(1_699_999_000))
        );
        assert_eq!(
            get(&attrs, "printer-config-change-time"),
            Some(&IppValue::Integer(1_699_990_000))
        );
        assert_eq!(
            get(&attrs, "printer-state-change-date-time"),
            Some(&date_time(1_699_999_000_000))
        );
        match get(&attrs, "media-col-database") {
            Some(IppValue::Array(media)) => assert_eq!(media.len(), MEDIA_SUPPORTED.len()),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_device_id_names_the_formats_as_languages() {
        assert_eq!(
            device_id(format::SUPPORTED),
            "MFG:Branch print appliance;MDL:Print queue;\
             CMD:PDF,PCLM,POSTSCRIPT,PCL,PWGRASTER,URF,JPEG;CLS:PRINTER;"
        );
    }

    #[test]
    fn every_attribute_name_is_unique_and_nonempty() {
        let attrs = default_queue_attributes();
        let mut names: Vec<&str> = attrs.iter().map(|a| a.name().as_str()).collect();
        let before = names.len();
        names.sort_unstable();
        names.dedup();
        assert_eq!(before, names.len());
        for a in &attrs {
            assert!(
                !matches!(a.value(), IppValue::Array(v) if v.is_empty()),
                "{}",
                a.name()
            );
        }
    }

    #[test]
    fn requested_attributes_filter() {
        let q = queues();
        let attrs = printer_attributes(
            q.default_queue().unwrap(),
            &status(),
            &Requested::only(&["printer-uri-supported"]),
        );
        assert_eq!(attrs.len(), 1);
    }

    #[test]
    fn printer_uuid_is_stable_and_site_specific() {
        assert_eq!(printer_uuid("a", "q"), printer_uuid("a", "q"));
        assert_ne!(printer_uuid("a", "q"), printer_uuid("b", "q"));
        assert!(printer_uuid("a", "q").starts_with("urn:uuid:"));
    }
}
