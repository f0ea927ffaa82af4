//! What a web page in the user's browser could make the browser send:
//! refused before anything else runs.
//!
//! - **DNS rebinding.** A server on loopback without an API key answers
//!   only requests addressed to a loopback name (`Host: 127.0.0.1:PORT`,
//!   `localhost`, `[::1]`); a page whose domain was re-pointed at 127.0.0.1
//!   sends its own name and is refused.
//! - **Cross-site writes.** A form or `fetch` from another site can POST a
//!   multipart upload without a CORS preflight. Writes (anything but GET,
//!   HEAD and OPTIONS) carrying `Sec-Fetch-Site: cross-site`, or an
//!   `Origin` that is neither this server nor one of `server.cors_origins`,
//!   are refused. Clients that are not browsers send neither header.

use crate::error::ApiError;
use crate::state::AppState;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::sync::Arc;

/// A `Host` header's name without its port.
fn host_name(host: &str) -> &str {
    let host = host.trim();
    if let Some(rest) = host.strip_prefix('[') {
        // [::1]:8080
        return rest.split(']').next().unwrap_or("");
    }
    match host.rsplit_once(':') {
        Some((name, port)) if port.chars().all(|c| c.is_ascii_digit()) => name,
        _ => host,
    }
}

/// Whether a host name means this machine's loopback interface.
pub fn is_loopback_name(host: &str) -> bool {
    let name = host_name(host).trim_end_matches('.').to_ascii_lowercase();
    name == "localhost"
        || name.ends_with(".localhost")
        || name == "::1"
        || name
            .parse::<std::net::Ipv4Addr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// `scheme://host[:port]` of an `Origin` header, lower-cased; `None` for
/// `null` and anything unparsable.
fn origin_host(origin: &str) -> Option<String> {
    let rest = origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"))?;
    let host = rest.split('/').next()?.to_ascii_lowercase();
    (!host.is_empty()).then_some(host)
}

/// Why this request is refused, if it is.
pub fn refusal(
    method: &Method,
    headers: &HeaderMap,
    keyless: bool,
    cors_origins: &[String],
) -> Option<String> {
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
    if keyless {
        if let Some(h) = host {
            if !is_loopback_name(h) {
                return Some(format!(
                    "Host `{h}` is not a loopback name: without an API key this server answers only requests to 127.0.0.1, localhost or [::1] (a guard against DNS rebinding)"
                ));
            }
        }
    }
    if matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS) {
        return None;
    }
    let site = headers
        .get("sec-fetch-site")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if site.eq_ignore_ascii_case("cross-site") {
        return Some(
            "a cross-site request (Sec-Fetch-Site: cross-site) may not change anything here".into(),
        );
    }
    if let Some(origin) = headers.get(header::ORIGIN) {
        let origin = origin.to_str().unwrap_or("");
        let allowed = cors_origins
            .iter()
            .any(|o| o.trim_end_matches('/').eq_ignore_ascii_case(origin));
        let same = match (origin_host(origin), host) {
            (Some(o), Some(h)) => o == h.trim().to_ascii_lowercase(),
            _ => false,
        };
        if !allowed && !same {
            return Some(format!(
                "a request from the web page at `{origin}` may not change anything here (add it to server.cors_origins to allow it)"
            ));
        }
    }
    None
}

/// Middleware: refuse what [`refusal`] names.
pub async fn same_site(State(state): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    if let Some(why) = refusal(
        req.method(),
        req.headers(),
        state.keys.is_empty(),
        &state.cfg.server.cors_origins,
    ) {
        tracing::warn!("refused {} {}: {why}", req.method(), req.uri().path());
        return ApiError::Refused(why).into_response();
    }
    next.run(req).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn loopback_names_and_others() {
        for ok in [
            "127.0.0.1:8080",
            "127.0.0.1",
            "localhost:8080",
            "LOCALHOST",
            "app.localhost:1",
            "[::1]:8080",
            "127.9.9.9",
        ] {
            assert!(is_loopback_name(ok), "{ok}");
        }
        for bad in [
            "evil.example:8080",
            "127.0.0.1.evil.example",
            "localhost.evil.example",
            "10.0.0.1:8080",
            "[::2]:80",
            "",
        ] {
            assert!(!is_loopback_name(bad), "{bad}");
        }
    }

    #[test]
    fn rebinding_and_cross_site_writes_are_refused() {
        let get = Method::GET;
        let post = Method::POST;
        let host = ("host", "127.0.0.1:8080");
        // DNS rebinding: another name, keyless. With keys the key guards it.
        let evil = headers(&[("host", "evil.example:8080")]);
        assert!(refusal(&get, &evil, true, &[]).is_some());
        assert!(refusal(&get, &evil, false, &[]).is_none());
        assert!(refusal(&get, &headers(&[host]), true, &[]).is_none());
        // Reads from anywhere are fine (CORS keeps their answers from the page).
        let cross = headers(&[
            host,
            ("origin", "http://evil.example"),
            ("sec-fetch-site", "cross-site"),
        ]);
        assert!(refusal(&get, &cross, true, &[]).is_none());
        // Writes: cross-site by either header, refused.
        assert!(refusal(&post, &cross, true, &[]).is_some());
        let site = headers(&[host, ("sec-fetch-site", "cross-site")]);
        assert!(refusal(&post, &site, false, &[]).is_some());
        let origin = headers(&[host, ("origin", "http://evil.example")]);
        assert!(refusal(&post, &origin, false, &[]).is_some());
        let null = headers(&[host, ("origin", "null")]);
        assert!(refusal(&post, &null, true, &[]).is_some());
        // The server's own page, an allowed origin, or no browser at all.
        let own = headers(&[
            host,
            ("origin", "http://127.0.0.1:8080"),
            ("sec-fetch-site", "same-origin"),
        ]);
        assert!(refusal(&post, &own, true, &[]).is_none());
        let listed = ["https://notes.example".to_string()];
        let allowed = headers(&[host, ("origin", "https://notes.example")]);
        assert!(refusal(&post, &allowed, false, &listed).is_none());
        assert!(refusal(&Method::DELETE, &headers(&[host]), true, &[]).is_none());
    }
}
