//! The booking board at `/`: one page, a script and a style sheet,
//! compiled into the binary (no build tool). It uses the HTTP/JSON API
//! and the change stream like any other client.

use axum::response::{IntoResponse, Response};
use tonic::codegen::http::header;

/// A file of the board and its content type.
pub(super) type Asset = (&'static str, &'static str);

pub(super) const INDEX: Asset = (include_str!("board/index.html"), "text/html; charset=utf-8");
pub(super) const SCRIPT: Asset = (
    include_str!("board/board.js"),
    "text/javascript; charset=utf-8",
);
pub(super) const STYLE: Asset = (include_str!("board/board.css"), "text/css; charset=utf-8");

pub(super) async fn page((body, content_type): Asset) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            // The board changes with the server: always ask.
            (header::CACHE_CONTROL, "no-cache"),
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'self'; frame-ancestors 'none'",
            ),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        body,
    )
        .into_response()
}
