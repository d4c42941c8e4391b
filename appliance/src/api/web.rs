//! The web release app on the API listener: a panel page per printer
//! (`/panel/DEVICE`), a phone and desktop page (`/release`), and their
//! static files (`/web/...`), all embedded in the binary so nothing is
//! installed, built or fetched from elsewhere.
//!
//! The app is plain HTML, CSS and JavaScript with no framework and no
//! build step (the case is argued in ARCHITECTURE.md). It uses the same
//! API as every other client, with the session in an HttpOnly,
//! SameSite=Strict cookie instead of a bearer token ([`cookie`]); every
//! page is served under a Content-Security-Policy that allows no inline
//! script and no other origin. Files are revalidated by `ETag`, so a panel
//! reloads nothing unchanged.

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, StatusCode, header};
use http_body_util::Full;
use sha2::{Digest, Sha256};

use crate::http_server::Response;

/// What the pages may load: their own scripts, styles and API, nothing
/// inline, nothing from another origin, never framed.
pub(super) const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; \
     form-action 'none'; frame-ancestors 'none'";

/// The name of the session cookie.
pub(super) const SESSION_COOKIE: &str = "release_session";

/// One embedded file.
struct Asset {
    content_type: &'static str,
    body: &'static [u8],
}

const PAGE: Asset = Asset {
    content_type: "text/html; charset=utf-8",
    body: include_bytes!("../../web/index.html"),
};

/// The static file at `path`, if there is one.
fn asset(path: &str) -> Option<Asset> {
    let (content_type, body): (&str, &[u8]) = match path {
        "/web/app.js" => (
            "text/javascript; charset=utf-8",
            include_bytes!("../../web/app.js"),
        ),
        "/web/app.css" => (
            "text/css; charset=utf-8",
            include_bytes!("../../web/app.css"),
        ),
        "/web/i18n/en.json" => ("application/json", include_bytes!("../../web/i18n/en.json")),
        "/web/i18n/de.json" => ("application/json", include_bytes!("../../web/i18n/de.json")),
        _ => return None,
    };
    Some(Asset { content_type, body })
}

/// Whether `path` belongs to the web app (and so is answered by [`serve`]).
pub(super) fn is_web_path(path: &str) -> bool {
    path == "/release"
        || path
            .strip_prefix("/panel/")
            .is_some_and(|d| !d.is_empty() && !d.contains('/'))
        || path.starts_with("/web/")
}

/// Answers a `GET` (or `HEAD`) of a web path: the app's page for
/// `/panel/DEVICE` and `/release` (the script reads which from the path),
/// a static file, or a 404; `304` when the client's copy is current.
pub(super) fn serve(path: &str, headers: &HeaderMap) -> Response {
    let found = if path.starts_with("/web/") {
        asset(path)
    } else {
        Some(PAGE)
    };
    let Some(asset) = found else {
        return respond(
            StatusCode::NOT_FOUND,
            "text/plain; charset=utf-8",
            None,
            Bytes::from_static(b"not found\n"),
        );
    };
    let etag = etag(asset.body);
    let current = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag));
    if current {
        return respond(
            StatusCode::NOT_MODIFIED,
            asset.content_type,
            Some(&etag),
            Bytes::new(),
        );
    }
    respond(
        StatusCode::OK,
        asset.content_type,
        Some(&etag),
        Bytes::from_static(asset.body),
    )
}

/// A strong validator of `body`: the first 128 bits of its SHA-256.
fn etag(body: &[u8]) -> String {
    let digest = Sha256::digest(body);
    format!("\"{}\"", hex::encode(&digest[..16]))
}

fn respond(status: StatusCode, content_type: &str, etag: Option<&str>, body: Bytes) -> Response {
    let mut builder = http::Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, content_type)
        .header(header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY)
        .header(header::X_CONTENT_TYPE_OPTIONS, "nosniff")
        .header(header::REFERRER_POLICY, "no-referrer")
        .header(header::CACHE_CONTROL, "no-cache");
    if let Some(etag) = etag {
        builder = builder.header(header::ETAG, etag);
    }
    builder
        .body(Full::new(body))
        .unwrap_or_else(|_| http::Response::new(Full::new(Bytes::new())))
}

/// The session cookies: set at a web login, cleared at logout, read back
/// on every request of the app.
pub(super) mod cookie {
    use super::*;

    /// `Set-Cookie` for a new session: HttpOnly (no script reads it),
    /// SameSite=Strict (no other site's page sends it), `Secure` over HTTPS.
    pub(in crate::api) fn set(token: &str, secure: bool) -> HeaderValue {
        let secure = if secure { "; Secure" } else { "" };
        HeaderValue::from_str(&format!(
            "{SESSION_COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict{secure}"
        ))
        .unwrap_or_else(|_| HeaderValue::from_static(""))
    }

    /// `Set-Cookie` that ends the session cookie.
    pub(in crate::api) fn clear(secure: bool) -> HeaderValue {
        let secure = if secure { "; Secure" } else { "" };
        HeaderValue::from_str(&format!(
            "{SESSION_COOKIE}=; Path=/; Max-Age=0; HttpOnly; SameSite=Strict{secure}"
        ))
        .unwrap_or_else(|_| HeaderValue::from_static(""))
    }

    /// The session token in the request's cookies, if any.
    pub(in crate::api) fn token(headers: &HeaderMap) -> Option<&str> {
        headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .filter_map(|pair| pair.trim().split_once('='))
            .find(|(name, _)| *name == SESSION_COOKIE)
            .map(|(_, value)| value.trim())
            .filter(|v| !v.is_empty())
    }

    /// Whether a request comes from a page of this server: its `Origin`
    /// names the host it was sent to. Browsers send `Origin` with every
    /// `POST` and `DELETE`, so a request that changes something with the
    /// session cookie and without a matching `Origin` is refused: with
    /// SameSite=Strict, the second of two independent guards against
    /// cross-site request forgery.
    pub(in crate::api) fn same_origin(headers: &HeaderMap) -> bool {
        let text = |name| {
            headers
                .get(name)
                .and_then(|v: &HeaderValue| v.to_str().ok())
        };
        match (text(header::ORIGIN), text(header::HOST)) {
            (Some(origin), Some(host)) => {
                origin.split_once("://").is_some_and(|(scheme, authority)| {
                    matches!(scheme, "http" | "https") && authority.eq_ignore_ascii_case(host)
                })
            }
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn web_paths_are_the_pages_and_the_files() {
        assert!(is_web_path("/panel/lobby"));
        assert!(is_web_path("/release"));
        assert!(is_web_path("/web/app.js"));
        assert!(!is_web_path("/panel/"));
        assert!(!is_web_path("/panel/a/b"));
        assert!(!is_web_path("/api/v1/jobs"));
    }

    #[test]
    fn pages_carry_the_policy_and_revalidate_by_etag() {
        let first = serve("/panel/lobby", &HeaderMap::new());
        assert_eq!(first.status(), StatusCode::OK);
        let csp = first.headers()[header::CONTENT_SECURITY_POLICY]
            .to_str()
            .unwrap();
        assert!(csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"));
        let etag = first.headers()[header::ETAG].to_str().unwrap().to_owned();
        let again = serve("/release", &headers(&[("if-none-match", &etag)]));
        assert_eq!(again.status(), StatusCode::NOT_MODIFIED);
        assert_eq!(
            serve("/web/app.js", &HeaderMap::new()).status(),
            StatusCode::OK
        );
        assert_eq!(
            serve("/web/nope.js", &HeaderMap::new()).status(),
            StatusCode::NOT_FOUND
        );
    }

    #[test]
    fn the_session_cookie_is_found_among_others_and_is_http_only() {
        let h = headers(&[("cookie", "a=1; release_session=abc ; b=2")]);
        assert_eq!(cookie::token(&h), Some("abc"));
        assert_eq!(
            cookie::token(&headers(&[("cookie", "release_session=")])),
            None
        );
        assert_eq!(cookie::token(&HeaderMap::new()), None);
        let set = cookie::set("abc", true);
        let set = set.to_str().unwrap();
        assert!(
            set.contains("HttpOnly") && set.contains("SameSite=Strict") && set.contains("Secure")
        );
        assert!(
            !cookie::set("abc", false)
                .to_str()
                .unwrap()
                .contains("Secure")
        );
        assert!(cookie::clear(false).to_str().unwrap().contains("Max-Age=0"));
    }

    #[test]
    fn only_a_page_of_this_server_is_same_origin() {
        let h = |origin: &str| headers(&[("origin", origin), ("host", "10.0.0.5:8080")]);
        assert!(cookie::same_origin(&h("http://10.0.0.5:8080")));
        assert!(cookie::same_origin(&h("https://10.0.0.5:8080")));
        assert!(!cookie::same_origin(&h("http://evil.example")));
        assert!(!cookie::same_origin(&h("http://10.0.0.5:8081")));
        assert!(!cookie::same_origin(&h("null")));
        assert!(!cookie::same_origin(&headers(&[("host", "10.0.0.5:8080")])));
    }
}
