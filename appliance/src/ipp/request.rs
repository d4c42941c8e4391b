//! Checks an IPP request's header and operation attributes (RFC 8011
//! sections 4.1.x) and extracts what the operations need. Pure: it takes
//! the parsed message and returns a [`Request`] or the error to answer.
//! [`decode`] runs the whole decoding path on a complete message (what the
//! server does as the bytes stream in), for the fuzz targets and tests.

use std::io::Cursor;

use ipp::model::{DelimiterTag, Operation};
use ipp::parser::IppParser;
use ipp::prelude::*;
use ipp::reader::IppReader;

use super::error::IppError;
use super::template;
use crate::ipp_wire::guard::AttributeGuard;
use crate::ipp_wire::values::as_str;

/// Operations this appliance implements (`operations-supported`).
pub const SUPPORTED_OPERATIONS: &[Operation] = &[
    Operation::PrintJob,
    Operation::ValidateJob,
    Operation::CreateJob,
    Operation::SendDocument,
    Operation::CancelJob,
    Operation::GetJobAttributes,
    Operation::GetJobs,
    Operation::GetPrinterAttributes,
    Operation::HoldJob,
    Operation::ReleaseJob,
    Operation::CancelMyJobs,
    Operation::CloseJob,
    Operation::IdentifyPrinter,
    Operation::CupsGetDefault,
    Operation::CupsGetPrinters,
];

/// The user named when a request names none.
pub const ANONYMOUS: &str = "anonymous";

/// A checked request, ready for its operation.
#[derive(Debug)]
pub struct Request {
    /// Version to answer with (the request's own).
    pub version: IppVersion,
    /// Echoed in the response.
    pub request_id: i32,
    /// The operation.
    pub operation: Operation,
    /// Operation attributes after charset and language.
    pub operation_attributes: Vec<IppAttribute>,
    /// The job-attributes group (job template attributes), if any.
    pub job_attributes: Vec<IppAttribute>,
    /// `requesting-user-name`, or [`ANONYMOUS`].
    pub user: String,
    /// Path of `printer-uri` or `job-uri`, if given.
    pub target_path: Option<String>,
    /// `job-id` operation attribute, if given.
    pub job_id: Option<i32>,
    /// The client's address, where the connection tells it (set by the
    /// server after [`check`]): uploads share resources per address.
    pub client: Option<std::net::IpAddr>,
}

impl Request {
    /// An operation attribute by name.
    pub fn attribute(&self, name: &str) -> Option<&IppValue> {
        self.operation_attributes
            .iter()
            .find(|a| a.name().as_str() == name)
            .map(|a| a.value())
    }

    /// An operation attribute's string value.
    pub fn string(&self, name: &str) -> Option<&str> {
        self.attribute(name).and_then(as_str)
    }

    /// A boolean operation attribute; a wrongly typed value is a bad request.
    pub fn boolean(&self, name: &str) -> Result<Option<bool>, IppError> {
        match self.attribute(name) {
            None => Ok(None),
            Some(IppValue::Boolean(b)) => Ok(Some(*b)),
            Some(_) => Err(IppError::BadRequest(format!("{name} must be a boolean"))),
        }
    }

    /// An integer operation attribute; a wrongly typed value is a bad request.
    pub fn integer(&self, name: &str) -> Result<Option<i32>, IppError> {
        match self.attribute(name) {
            None => Ok(None),
            Some(IppValue::Integer(n)) => Ok(Some(*n)),
            Some(_) => Err(IppError::BadRequest(format!("{name} must be an integer"))),
        }
    }

    /// `job-ids` (1setOf integer(1:MAX)), when given.
    pub fn job_ids(&self) -> Result<Option<Vec<i32>>, IppError> {
        let bad = || IppError::BadRequest("job-ids must be job ids (integers from 1)".into());
        let id = |value: &IppValue| match value {
            IppValue::Integer(n) if *n >= 1 => Ok(*n),
            _ => Err(bad()),
        };
        match self.attribute("job-ids") {
            None => Ok(None),
            Some(IppValue::Array(values)) if !values.is_empty() => {
                values.iter().map(id).collect::<Result<_, _>>().map(Some)
            }
            Some(IppValue::Array(_)) => Err(bad()),
            Some(value) => id(value).map(|n| Some(vec![n])),
        }
    }

    /// `requested-attributes` as keywords (empty when absent).
    pub fn requested_attributes(&self) -> Vec<String> {
        match self.attribute("requested-attributes") {
            Some(IppValue::Array(values)) => values
                .iter()
                .filter_map(as_str)
                .map(str::to_owned)
                .collect(),
            Some(value) => as_str(value).map(str::to_owned).into_iter().collect(),
            None => Vec::new(),
        }
    }

    /// The operation's name, for logs and metrics.
    pub fn operation_name(&self) -> &'static str {
        operation_name(self.operation as i16)
    }
}

/// IPP's name for an operation code.
pub fn operation_name(code: i16) -> &'static str {
    match code {
        0x0002 => "Print-Job",
        0x0004 => "Validate-Job",
        0x0005 => "Create-Job",
        0x0006 => "Send-Document",
        0x0008 => "Cancel-Job",
        0x0009 => "Get-Job-Attributes",
        0x000A => "Get-Jobs",
        0x000B => "Get-Printer-Attributes",
        0x000C => "Hold-Job",
        0x000D => "Release-Job",
        0x0039 => "Cancel-My-Jobs",
        0x003B => "Close-Job",
        0x003C => "Identify-Printer",
        0x4001 => "CUPS-Get-Default",
        0x4002 => "CUPS-Get-Printers",
        _ => "unsupported",
    }
}

/// Decodes a whole request message as the server does: the attribute
/// guard, the `ipp` crate's parser, [`check`], and the job template check.
pub fn decode(message: &[u8]) -> Result<Request, IppError> {
    let mut guard = AttributeGuard::default();
    guard.feed(message).map_err(IppError::BadRequest)?;
    if !guard.is_done() {
        return Err(IppError::BadRequest(
            "the IPP request ended early (truncated)".into(),
        ));
    }
    let parsed = IppParser::new(IppReader::new(Cursor::new(message.to_vec())))
        .parse()
        .map_err(|e| IppError::BadRequest(format!("malformed IPP request: {e}")))?;
    let request = check(parsed.header(), parsed.attributes())?;
    template::check(&request.job_attributes);
    Ok(request)
}

/// Checks the header and the operation attributes group.
pub fn check(header: &ipp::IppHeader, attributes: &IppAttributes) -> Result<Request, IppError> {
    let major = (header.version.0 >> 8) as u8;
    let minor = (header.version.0 & 0xff) as u8;
    if !(1..=2).contains(&major) {
        return Err(IppError::VersionNotSupported(major, minor));
    }
    if header.request_id <= 0 {
        return Err(IppError::BadRequest(
            "request-id must be a positive integer".into(),
        ));
    }
    let groups = attributes.groups();
    let operation_group = match groups.first() {
        Some(g) if g.tag() == DelimiterTag::OperationAttributes => g.attributes(),
        _ => {
            return Err(IppError::BadRequest(
                "the request must start with the operation attributes group".into(),
            ));
        }
    };
    match operation_group {
        [charset, language, ..]
            if charset.name().as_str() == "attributes-charset"
                && language.name().as_str() == "attributes-natural-language" =>
        {
            let IppValue::Charset(cs) = charset.value() else {
                return Err(IppError::BadRequest(
                    "attributes-charset must be of type charset".into(),
                ));
            };
            if !matches!(language.value(), IppValue::NaturalLanguage(_)) {
                return Err(IppError::BadRequest(
                    "attributes-natural-language must be of type naturalLanguage".into(),
                ));
            }
            if !cs.as_str().eq_ignore_ascii_case("utf-8")
                && !cs.as_str().eq_ignore_ascii_case("us-ascii")
            {
                return Err(IppError::CharsetNotSupported(cs.as_str().to_owned()));
            }
        }
        _ => {
            return Err(IppError::BadRequest(
                "attributes-charset and attributes-natural-language must be the first two operation attributes".into(),
            ));
        }
    }
    let operation = SUPPORTED_OPERATIONS
        .iter()
        .copied()
        .find(|op| *op as i16 == header.operation_or_status)
        .ok_or(IppError::OperationNotSupported(header.operation_or_status))?;

    let rest = &operation_group[2..];
    let find = |name: &str| rest.iter().find(|a| a.name().as_str() == name);

    let target_path = match (find("printer-uri"), find("job-uri")) {
        (_, Some(job_uri)) => Some(uri_attribute_path(job_uri)?),
        (Some(printer_uri), None) => Some(uri_attribute_path(printer_uri)?),
        (None, None) => None,
    };
    let needs_target = !matches!(
        operation,
        Operation::CupsGetDefault | Operation::CupsGetPrinters
    );
    if needs_target && target_path.is_none() {
        return Err(IppError::BadRequest(
            "printer-uri (or job-uri) is required".into(),
        ));
    }
    let user = match find("requesting-user-name").map(|a| a.value()) {
        None => ANONYMOUS.to_owned(),
        Some(value @ (IppValue::NameWithoutLanguage(_) | IppValue::NameWithLanguage { .. })) => {
            match as_str(value).map(str::trim) {
                Some("") | None => ANONYMOUS.to_owned(),
                Some(user) => user.to_owned(),
            }
        }
        Some(_) => {
            return Err(IppError::BadRequest(
                "requesting-user-name must be of type name".into(),
            ));
        }
    };
    let job_id = match find("job-id").map(|a| a.value()) {
        None => None,
        Some(IppValue::Integer(id)) if *id > 0 => Some(*id),
        Some(_) => {
            return Err(IppError::BadRequest(
                "job-id must be a positive integer".into(),
            ));
        }
    };
    let job_attributes = groups
        .iter()
        .filter(|g| g.tag() == DelimiterTag::JobAttributes)
        .flat_map(|g| g.attributes().iter().cloned())
        .collect();

    Ok(Request {
        version: header.version,
        request_id: header.request_id,
        operation,
        operation_attributes: rest.to_vec(),
        job_attributes,
        user,
        target_path,
        job_id,
        client: None,
    })
}

fn uri_attribute_path(a: &IppAttribute) -> Result<String, IppError> {
    let name = a.name().as_str();
    let IppValue::Uri(uri) = a.value() else {
        return Err(IppError::BadRequest(format!("{name} must be of type uri")));
    };
    crate::queue::uri_path(uri.as_str())
        .map(str::to_owned)
        .ok_or_else(|| {
            IppError::BadRequest(format!("{name} {:?} is not an absolute URI", uri.as_str()))
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ipp_wire::values::{attr, charset, language, name, uri};
    use ipp::IppHeader;

    fn header(version: u16, op: Operation, id: i32) -> IppHeader {
        IppHeader::new(IppVersion(version), op as i16, id)
    }

    fn operation_group(attrs: Vec<IppAttribute>) -> IppAttributes {
        let mut all = IppAttributes::new();
        let mut group = ipp::attribute::IppAttributeGroup::new(DelimiterTag::OperationAttributes);
        group.attributes_mut().extend(attrs);
        all.groups_mut().push(group);
        all
    }

    fn standard(extra: Vec<IppAttribute>) -> IppAttributes {
        let mut attrs = vec![
            attr("attributes-charset", charset("utf-8")),
            attr("attributes-natural-language", language("en")),
        ];
        attrs.extend(extra);
        operation_group(attrs)
    }

    fn status(result: Result<Request, IppError>) -> StatusCode {
        match result {
            Ok(_) => StatusCode::SuccessfulOk,
            Err(e) => e.status(),
        }
    }

    #[test]
    fn a_well_formed_request_is_accepted() {
        let req = check(
            &header(0x0101, Operation::PrintJob, 1),
            &standard(vec![
                attr("printer-uri", uri("ipp://h:631/printers/secure")),
                attr("requesting-user-name", name("alice")),
            ]),
        )
        .unwrap();
        assert_eq!(req.user, "alice");
        assert_eq!(req.target_path.as_deref(), Some("/printers/secure"));
        assert_eq!(req.operation_name(), "Print-Job");
    }

    #[test]
    fn job_ids_are_positive_integers() {
        let with = |value: IppValue| {
            check(
                &header(0x0200, Operation::GetJobs, 1),
                &standard(vec![
                    attr("printer-uri", uri("ipp://h/ipp/print")),
                    attr("job-ids", value),
                ]),
            )
            .unwrap()
            .job_ids()
        };
        let ids = IppValue::Array(vec![IppValue::Integer(3), IppValue::Integer(7)]);
        assert_eq!(with(ids).unwrap(), Some(vec![3, 7]));
        assert_eq!(with(IppValue::Integer(5)).unwrap(), Some(vec![5]));
        assert!(with(IppValue::Integer(0)).is_err());
        assert!(with(name("three")).is_err());
    }

    #[test]
    fn rfc_8011_section_4_1_rules() {
        let good = standard(vec![attr("printer-uri", uri("ipp://h/ipp/print"))]);
        // 4.1.1 request-id 0
        assert_eq!(
            status(check(
                &header(0x0101, Operation::GetPrinterAttributes, 0),
                &good
            )),
            StatusCode::ClientErrorBadRequest
        );
        // 4.1.8 version 0.0
        assert_eq!(
            status(check(
                &header(0x0000, Operation::GetPrinterAttributes, 1),
                &good
            )),
            StatusCode::ServerErrorVersionNotSupported
        );
        // 4.1.4 missing or reordered charset / language
        let no_lang = operation_group(vec![
            attr("attributes-charset", charset("utf-8")),
            attr("printer-uri", uri("ipp://h/ipp/print")),
        ]);
        assert_eq!(
            status(check(
                &header(0x0101, Operation::GetPrinterAttributes, 1),
                &no_lang
            )),
            StatusCode::ClientErrorBadRequest
        );
        let swapped = operation_group(vec![
            attr("attributes-natural-language", language("en")),
            attr("attributes-charset", charset("utf-8")),
            attr("printer-uri", uri("ipp://h/ipp/print")),
        ]);
        assert_eq!(
            status(check(
                &header(0x0101, Operation::GetPrinterAttributes, 1),
                &swapped
            )),
            StatusCode::ClientErrorBadRequest
        );
        assert_eq!(
            status(check(
                &header(0x0101, Operation::GetPrinterAttributes, 1),
                &operation_group(vec![])
            )),
            StatusCode::ClientErrorBadRequest
        );
        // 4.2 missing printer-uri
        assert_eq!(
            status(check(
                &header(0x0101, Operation::GetPrinterAttributes, 1),
                &standard(vec![])
            )),
            StatusCode::ClientErrorBadRequest
        );
    }

    #[test]
    fn unknown_operations_and_charsets_are_refused() {
        let good = standard(vec![attr("printer-uri", uri("ipp://h/ipp/print"))]);
        let unknown = IppHeader::new(IppVersion::v1_1(), 0x0055, 1);
        assert_eq!(
            status(check(&unknown, &good)),
            StatusCode::ServerErrorOperationNotSupported
        );
        let latin = operation_group(vec![
            attr("attributes-charset", charset("iso-8859-1")),
            attr("attributes-natural-language", language("en")),
            attr("printer-uri", uri("ipp://h/ipp/print")),
        ]);
        assert_eq!(
            status(check(&header(0x0200, Operation::GetJobs, 1), &latin)),
            StatusCode::ClientErrorCharsetNotSupported
        );
    }

    #[test]
    fn cups_operations_need_no_printer_uri() {
        assert!(
            check(
                &header(0x0101, Operation::CupsGetDefault, 3),
                &standard(vec![])
            )
            .is_ok()
        );
    }

    #[test]
    fn missing_or_empty_user_is_anonymous_and_bad_types_are_refused() {
        let req = check(
            &header(0x0101, Operation::GetJobs, 1),
            &standard(vec![
                attr("printer-uri", uri("ipp://h/ipp/print")),
                attr("requesting-user-name", name("  ")),
            ]),
        )
        .unwrap();
        assert_eq!(req.user, ANONYMOUS);
        let bad = standard(vec![
            attr("printer-uri", uri("ipp://h/ipp/print")),
            attr("job-id", IppValue::Integer(-4)),
        ]);
        assert_eq!(
            status(check(&header(0x0101, Operation::CancelJob, 1), &bad)),
            StatusCode::ClientErrorBadRequest
        );
        let bad_uri = standard(vec![attr("printer-uri", name("ipp://h/ipp/print"))]);
        assert_eq!(
            status(check(&header(0x0101, Operation::GetJobs, 1), &bad_uri)),
            StatusCode::ClientErrorBadRequest
        );
    }

    #[test]
    fn decode_runs_the_server_path_on_a_whole_message() {
        let uri: ipp::prelude::Uri = "ipp://127.0.0.1:8631/ipp/print/secure".parse().unwrap();
        let mut message = IppRequestResponse::new(
            IppVersion::v2_0(),
            Operation::GetPrinterAttributes,
            Some(uri),
        )
        .unwrap();
        message.attributes_mut().add(
            DelimiterTag::OperationAttributes,
            attr("requesting-user-name", name("alice")),
        );
        let bytes = message.to_bytes();
        let request = decode(&bytes).unwrap();
        assert_eq!(
            (request.operation, request.user.as_str()),
            (Operation::GetPrinterAttributes, "alice")
        );
        assert!(matches!(
            decode(&bytes[..bytes.len() - 1]),
            Err(IppError::BadRequest(m)) if m.contains("truncated")
        ));
        assert!(matches!(decode(b"\x02\x00"), Err(IppError::BadRequest(_))));
    }
}
