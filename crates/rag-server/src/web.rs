//! The web page at `/`: one HTML file compiled into the binary.

use axum::response::Html;

/// The page: ask a question, watch the answer stream in, read each citation with the sentence
/// the answer drew on highlighted in its passage.
const INDEX: &str = include_str!("../assets/index.html");

/// `GET /`.
pub async fn index() -> Html<&'static str> {
    Html(INDEX)
}
