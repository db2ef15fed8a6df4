//! The web console: a static single-page app (sources beside this file, built by Vite into
//! `dist/`) embedded into the binary by `build.rs` and served by the API listener itself, so it
//! shares the API's origin and needs no other server and no CDN. Every path outside `/api/` is
//! the console's; the page talks to the API with the bearer token the person pasted.
//!
//! Built assets under `/assets/` carry content hashes in their names and are cached for a year;
//! `index.html` is revalidated on every load (ETag) so a new binary's console is picked up.

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};

mod generated {
    include!(concat!(env!("OUT_DIR"), "/console_assets.rs"));
}

/// What the page may load: only this origin (the API and the embedded assets). The terminal
/// player instantiates WebAssembly and sets inline styles.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self' 'wasm-unsafe-eval'; \
     style-src 'self' 'unsafe-inline'; img-src 'self' data:; font-src 'self' data:; \
     connect-src 'self'; worker-src 'self' blob:; object-src 'none'; base-uri 'none'; \
     frame-ancestors 'none'; form-action 'none'";

const BUILD_HINT: &str =
    "npm --prefix src/api/console ci && npm --prefix src/api/console run build";

/// True when this binary was built with the console's assets.
pub fn built() -> bool {
    !generated::ASSETS.is_empty()
}

/// The embedded file at `path` (`/index.html`, `/assets/...`): contents and ETag.
pub fn asset(path: &str) -> Option<(&'static [u8], &'static str)> {
    generated::ASSETS
        .iter()
        .find(|(p, _, _)| *p == path)
        .map(|(_, body, etag)| (*body, *etag))
}

pub fn content_type(path: &str) -> &'static str {
    let ext = path.rsplit_once('.').map(|(_, e)| e).unwrap_or_default();
    match ext {
        "html" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "json" | "map" => "application/json",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "ico" => "image/x-icon",
        "wasm" => "application/wasm",
        "woff2" => "font/woff2",
        "woff" => "font/woff",
        "ttf" => "font/ttf",
        "txt" => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

fn common_headers(h: &mut HeaderMap) {
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
}

fn text(status: StatusCode, message: &str) -> Response {
    let mut r = (status, message.to_string()).into_response();
    common_headers(r.headers_mut());
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

/// The page served at `/` when the binary was built without the console.
pub fn not_built_page() -> String {
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>proctor: console not built</title></head>\
         <body style=\"font-family: sans-serif; max-width: 46em; margin: 3em auto; line-height: 1.5\">\
         <h1>proctor</h1><p><strong>The web console was not built into this binary</strong> \
         (npm was not available, or its assets were not built before <code>cargo build</code>).</p>\
         <p>To include it, from the repository root run</p>\
         <pre style=\"background:#eee;padding:1em\">{BUILD_HINT}\ncargo build</pre>\
         <p>The HTTP API works without it: see <a href=\"/api/openapi.json\">/api/openapi.json</a>.</p>\
         </body></html>"
    )
}

/// Serves the console for every path outside `/api/`: an embedded file, or `index.html` for the
/// page's own routes (paths without a file extension).
pub async fn serve(method: Method, uri: Uri, headers: HeaderMap) -> Response {
    if method != Method::GET && method != Method::HEAD {
        let mut r = text(
            StatusCode::METHOD_NOT_ALLOWED,
            "the console is read-only: GET or HEAD",
        );
        r.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        return r;
    }
    let path = uri.path();
    let is_page = path == "/" || !path.rsplit('/').next().unwrap_or_default().contains('.');
    if !built() {
        if !is_page && path != "/index.html" {
            return text(
                StatusCode::NOT_FOUND,
                "no such file (the console was not built)",
            );
        }
        let mut r = (StatusCode::OK, not_built_page()).into_response();
        let h = r.headers_mut();
        common_headers(h);
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/html; charset=utf-8"),
        );
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        return r;
    }
    let (name, found) = match asset(path) {
        Some(a) => (path, a),
        None if is_page => match asset("/index.html") {
            Some(a) => ("/index.html", a),
            None => return text(StatusCode::NOT_FOUND, "no such file"),
        },
        None => return text(StatusCode::NOT_FOUND, "no such file"),
    };
    let (bytes, etag) = found;
    let immutable = name.starts_with("/assets/");
    let not_modified = !immutable
        && headers
            .get(header::IF_NONE_MATCH)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"));
    let (status, body) = if not_modified {
        (StatusCode::NOT_MODIFIED, Body::empty())
    } else if method == Method::HEAD {
        (StatusCode::OK, Body::empty())
    } else {
        (StatusCode::OK, Body::from(bytes))
    };
    let mut r = (status, body).into_response();
    let h = r.headers_mut();
    common_headers(h);
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(content_type(name)),
    );
    if !not_modified {
        h.insert(header::CONTENT_LENGTH, HeaderValue::from(bytes.len()));
    }
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static(if immutable {
            "public, max-age=31536000, immutable"
        } else {
            "no-cache"
        }),
    );
    if let Ok(v) = HeaderValue::from_str(etag) {
        h.insert(header::ETAG, v);
    }
    if name == "/index.html" {
        h.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CONTENT_SECURITY_POLICY),
        );
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_types() {
        assert_eq!(content_type("/index.html"), "text/html; charset=utf-8");
        assert_eq!(
            content_type("/assets/index-abc.js"),
            "text/javascript; charset=utf-8"
        );
        assert_eq!(content_type("/assets/x.css"), "text/css; charset=utf-8");
        assert_eq!(content_type("/assets/x.wasm"), "application/wasm");
        assert_eq!(content_type("/x"), "application/octet-stream");
    }

    #[tokio::test]
    async fn pages_and_assets() {
        let get = |p: &str| serve(Method::GET, p.parse().unwrap(), HeaderMap::new());
        let r = get("/").await;
        assert_eq!(r.status(), StatusCode::OK);
        assert!(
            r.headers()[header::CONTENT_TYPE]
                .to_str()
                .unwrap()
                .starts_with("text/html")
        );
        let r = get("/sessions").await;
        assert_eq!(r.status(), StatusCode::OK, "the page's own routes");
        let r = get("/assets/missing-file.js").await;
        assert_eq!(r.status(), StatusCode::NOT_FOUND);
        let r = serve(Method::POST, "/".parse().unwrap(), HeaderMap::new()).await;
        assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);
        if built() {
            let r = get("/").await;
            let etag = r.headers()[header::ETAG].clone();
            assert_eq!(r.headers()[header::CACHE_CONTROL], "no-cache");
            let mut h = HeaderMap::new();
            h.insert(header::IF_NONE_MATCH, etag);
            let r = serve(Method::GET, "/".parse().unwrap(), h).await;
            assert_eq!(r.status(), StatusCode::NOT_MODIFIED);
            let (js, _, _) = generated::ASSETS
                .iter()
                .find(|(p, _, _)| p.starts_with("/assets/") && p.ends_with(".js"))
                .expect("a built script");
            let r = get(js).await;
            assert_eq!(r.status(), StatusCode::OK);
            assert!(
                r.headers()[header::CACHE_CONTROL]
                    .to_str()
                    .unwrap()
                    .contains("immutable")
            );
        } else {
            let r = get("/").await;
            let body = axum::body::to_bytes(r.into_body(), 1 << 20).await.unwrap();
            let body = String::from_utf8_lossy(&body);
            assert!(body.contains("console was not built"), "{body}");
            assert!(body.contains(BUILD_HINT));
        }
    }
}
