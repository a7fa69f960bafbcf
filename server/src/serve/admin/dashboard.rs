//! The admin dashboard at `/_strata/`: one self-contained page
//! (`dashboard.html`: HTML, CSS and plain JS, no build step, nothing from
//! elsewhere) over the admin API. The page itself is public; it asks for
//! the admin token, keeps it in the tab's `sessionStorage` and sends it with
//! each API call, so the API's own check is the only one.

use axum::http::header;
use axum::response::{IntoResponse, Redirect, Response};
use base64::Engine;
use sha2::{Digest, Sha256};
use std::sync::LazyLock;

const PAGE: &str = include_str!("dashboard.html");

/// The page's inline `<script>` and `<style>` run only if their hashes
/// match, so nothing injected into the page could run; it may only call
/// this origin, and no other site may frame it (its buttons act).
static CSP: LazyLock<String> = LazyLock::new(|| {
    format!(
        "default-src 'none'; script-src {}; style-src {}; connect-src 'self'; img-src data:; \
         base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
        inline_hash("script"),
        inline_hash("style"),
    )
});

/// `'sha256-…'` of the page's one `<tag>` element's text (`'none'` if it
/// has none, which the unit test rules out).
fn inline_hash(tag: &str) -> String {
    let body = PAGE
        .split_once(&format!("<{tag}>"))
        .and_then(|(_, rest)| rest.split_once(&format!("</{tag}>")));
    match body {
        Some((text, _)) => format!(
            "'sha256-{}'",
            base64::engine::general_purpose::STANDARD.encode(Sha256::digest(text.as_bytes()))
        ),
        None => "'none'".into(),
    }
}

pub async fn page() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
            (header::CONTENT_SECURITY_POLICY, CSP.as_str()),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::REFERRER_POLICY, "no-referrer"),
        ],
        PAGE,
    )
        .into_response()
}

/// `/_strata` → `/_strata/`, so that the page's relative `api/…` URLs
/// resolve under `/_strata/`.
pub async fn redirect() -> Redirect {
    Redirect::permanent("/_strata/")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_has_one_script_and_one_style_and_both_are_hashed() {
        for tag in ["script", "style"] {
            assert_eq!(PAGE.matches(&format!("<{tag}")).count(), 1, "{tag}");
            assert!(inline_hash(tag).starts_with("'sha256-"), "{tag}");
        }
        // Data goes into the page as text only.
        assert!(!PAGE.contains("innerHTML") && !PAGE.contains("insertAdjacentHTML"));
    }
}
