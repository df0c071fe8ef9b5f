//! The chat page at `/ui/`: static files built into the binary (`crates/corral-server/ui/`).
//!
//! The page is plain ES modules, served as written: no bundler, no toolchain from npm in the
//! build, nothing fetched from another origin. It talks to the same `/api/*` routes as every other
//! client, under the same keys (the page asks for one when the server answers 401), so its files
//! hold no data and need no key themselves. Every answer carries a Content-Security-Policy that
//! allows scripts, styles and connections to this origin only, with no inline code.
//!
//! Each file is served gzip-compressed when the client accepts it (compressed once, on first
//! use) with an ETag from its content, so a reload costs a 304.

use std::sync::OnceLock;

use axum::extract::Path;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::Router;
use sha2::{Digest, Sha256};

use crate::AppState;

/// What the page may load: its own files; images from its own origin or the ones the user
/// attaches (`data:`/`blob:`), media likewise; nothing inline, no frames, no plugins.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; \
                   media-src 'self' data: blob:; connect-src 'self'; font-src 'self'; manifest-src 'self'; \
                   base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// The page's files: name under `/ui/`, content type, bytes.
const FILES: &[(&str, &str, &[u8])] = &[
    ("index.html", "text/html; charset=utf-8", include_bytes!("../ui/index.html")),
    ("style.css", "text/css; charset=utf-8", include_bytes!("../ui/style.css")),
    ("app.js", "text/javascript; charset=utf-8", include_bytes!("../ui/app.js")),
    ("api.js", "text/javascript; charset=utf-8", include_bytes!("../ui/api.js")),
    ("store.js", "text/javascript; charset=utf-8", include_bytes!("../ui/store.js")),
    ("chat.js", "text/javascript; charset=utf-8", include_bytes!("../ui/chat.js")),
    ("models.js", "text/javascript; charset=utf-8", include_bytes!("../ui/models.js")),
    ("markdown.js", "text/javascript; charset=utf-8", include_bytes!("../ui/markdown.js")),
    ("icon.svg", "image/svg+xml", include_bytes!("../ui/icon.svg")),
];

/// A file ready to serve: its bytes plain and compressed, and its ETag.
struct Prepared {
    gzip: Vec<u8>,
    etag: String,
}

fn prepared() -> &'static [Prepared] {
    static PREPARED: OnceLock<Vec<Prepared>> = OnceLock::new();
    PREPARED.get_or_init(|| {
        FILES
            .iter()
            .map(|(_, _, bytes)| {
                use std::io::Write;
                let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
                gz.write_all(bytes).expect("writing to memory");
                let hash = Sha256::digest(bytes);
                let etag = format!("\"{}\"", hash.iter().take(8).map(|b| format!("{b:02x}")).collect::<String>());
                Prepared { gzip: gz.finish().expect("writing to memory"), etag }
            })
            .collect()
    })
}

/// The page's routes (an empty router when `CORRAL_UI=0`: `/ui/` is then a 404 like any
/// unknown path).
pub(crate) fn routes(enabled: bool) -> Router<AppState> {
    if !enabled {
        return Router::new();
    }
    Router::new()
        .route("/ui", get(|| async { Redirect::permanent("/ui/") }))
        .route("/ui/", get(|headers: HeaderMap| async move { serve("index.html", &headers) }))
        .route("/ui/{file}", get(|Path(file): Path<String>, headers: HeaderMap| async move { serve(&file, &headers) }))
}

/// The bytes of every file together, plain and compressed: what a first visit downloads.
pub fn page_size() -> (usize, usize) {
    let plain = FILES.iter().map(|(_, _, b)| b.len()).sum();
    (plain, prepared().iter().map(|p| p.gzip.len()).sum())
}

fn serve(name: &str, headers: &HeaderMap) -> Response {
    let Some(index) = FILES.iter().position(|(n, _, _)| *n == name) else {
        return (StatusCode::NOT_FOUND, [(header::CONTENT_TYPE, "text/plain")], "404 page not found").into_response();
    };
    let (_, content_type, bytes) = FILES[index];
    let file = &prepared()[index];
    let mut out = HeaderMap::new();
    out.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    out.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    out.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    out.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    out.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    // Revalidated on every load: a new binary's page is seen at once, an unchanged one costs a 304.
    out.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    out.insert(header::VARY, HeaderValue::from_static("accept-encoding"));
    out.insert(header::ETAG, HeaderValue::from_str(&file.etag).expect("hex"));
    let matches = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim().trim_start_matches("W/") == file.etag));
    if matches {
        return (StatusCode::NOT_MODIFIED, out).into_response();
    }
    let gzip = headers.get(header::ACCEPT_ENCODING).and_then(|v| v.to_str().ok()).is_some_and(|v| {
        v.split(',').any(|e| e.split(';').next().is_some_and(|e| e.trim().eq_ignore_ascii_case("gzip")))
    });
    if gzip {
        out.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
        return (out, file.gzip.clone()).into_response();
    }
    (out, bytes).into_response()
}
