//! The one error answer of the API: a status and a JSON body that names the field at fault and
//! says what to do, `{"error": {"code": "...", "field": "...", "message": "..."}}`.

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use rag::RagError;
use serde::Serialize;

/// An error answered to a client.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// A stable machine-readable code (`invalid_input`, `not_found`, `forbidden`, ...).
    pub code: &'static str,
    /// The request field at fault, when one is.
    pub field: Option<String>,
    /// What is wrong and what to do.
    pub message: String,
    /// Seconds a client should wait before retrying (sent as `Retry-After`).
    pub retry_after: Option<u64>,
}

#[derive(Serialize)]
struct Body<'a> {
    error: Detail<'a>,
}

#[derive(Serialize)]
struct Detail<'a> {
    code: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    field: Option<&'a str>,
    message: &'a str,
}

impl ApiError {
    /// An error with no field.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self { status, code, field: None, message: message.into(), retry_after: None }
    }

    /// A 400 naming `field`.
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self { field: Some(field.into()), ..Self::new(StatusCode::BAD_REQUEST, "invalid_input", message) }
    }

    /// A 401: no key, or an unknown one.
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }

    /// A 403: the key may not do this.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", message)
    }

    /// A 404.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    /// A 503 with `Retry-After`.
    pub fn overloaded(message: impl Into<String>, retry_after: u64) -> Self {
        Self { retry_after: Some(retry_after), ..Self::new(StatusCode::SERVICE_UNAVAILABLE, "overloaded", message) }
    }

    /// The JSON body, for streams that report an error as an event.
    pub fn body(&self) -> serde_json::Value {
        serde_json::to_value(Body { error: Detail { code: self.code, field: self.field.as_deref(), message: &self.message } })
            .unwrap_or_default()
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status, Json(self.body())).into_response();
        if let Some(secs) = self.retry_after
            && let Ok(v) = HeaderValue::from_str(&secs.to_string())
        {
            response.headers_mut().insert(header::RETRY_AFTER, v);
        }
        response
    }
}

impl From<RagError> for ApiError {
    fn from(e: RagError) -> Self {
        match &e {
            RagError::InvalidInput { input, message } => Self::invalid(input.clone(), message.clone()),
            RagError::NotFound { .. } | RagError::EmptyCollection { .. } => Self::not_found(e.to_string()),
            RagError::Busy { .. } => {
                tracing::warn!(error = %e, "a file the request needs is held by another process (503)");
                Self { retry_after: Some(1), ..Self::new(StatusCode::SERVICE_UNAVAILABLE, "busy", e.to_string()) }
            }
            RagError::Config { message } => Self::new(StatusCode::BAD_REQUEST, "not_configured", message.clone()),
            RagError::DimensionMismatch { .. } => Self::new(StatusCode::CONFLICT, "dimension_mismatch", e.to_string()),
            // The client gets the backend's message; the log keeps the cause for the operator.
            RagError::Transient { backend, message, .. } => {
                tracing::warn!(error = %e, "a backend failed transiently while serving a request (503)");
                Self {
                    retry_after: Some(1),
                    ..Self::new(StatusCode::SERVICE_UNAVAILABLE, "backend_unavailable", format!("{backend}: {message}"))
                }
            }
            RagError::Permanent { backend, message, .. } => {
                tracing::warn!(error = %e, "a backend failed while serving a request (502)");
                Self::new(StatusCode::BAD_GATEWAY, "backend_failed", format!("{backend}: {message}"))
            }
            RagError::Remote { .. } => {
                tracing::warn!(error = %e, "a peer failed while serving a request (502)");
                Self::new(StatusCode::BAD_GATEWAY, "backend_failed", e.to_string())
            }
            RagError::Timeout { .. } => Self::new(StatusCode::GATEWAY_TIMEOUT, "timeout", e.to_string()),
            // The traceback stays in the server's log; the client gets the exception itself.
            RagError::Python { exc_type, message, .. } => {
                tracing::error!(error = %e, "Python error while serving a request");
                Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", format!("Python {exc_type}: {message}"))
            }
            _ => {
                tracing::error!(error = %e, "error while serving a request");
                Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string())
            }
        }
    }
}

impl From<JsonRejection> for ApiError {
    fn from(r: JsonRejection) -> Self {
        match r {
            JsonRejection::JsonDataError(e) => {
                // serde's message names the field ("unknown field `kk`", "missing field `question`").
                let text = e.body_text();
                let field = field_in(&text);
                Self { field, ..Self::new(StatusCode::BAD_REQUEST, "invalid_input", text) }
            }
            JsonRejection::JsonSyntaxError(e) => {
                Self { field: Some("body".into()), ..Self::new(StatusCode::BAD_REQUEST, "invalid_json", e.body_text()) }
            }
            JsonRejection::MissingJsonContentType(_) => Self::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "send the body as JSON with `Content-Type: application/json`",
            ),
            other if other.status() == StatusCode::PAYLOAD_TOO_LARGE => Self::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body_too_large",
                "the request body is larger than server.max_body_bytes: send fewer documents per request",
            ),
            other => Self::new(other.status(), "invalid_body", other.body_text()),
        }
    }
}

/// The field a serde message names: `unknown field `kk``, `missing field `question``, or the
/// path before `: invalid type` (`k: invalid type: ...`).
fn field_in(text: &str) -> Option<String> {
    for marker in ["unknown field `", "missing field `", "unknown variant `"] {
        if let Some(i) = text.find(marker) {
            let rest = &text[i + marker.len()..];
            if marker == "unknown variant `" {
                break;
            }
            return rest.split('`').next().map(str::to_owned);
        }
    }
    // axum prefixes the path: "Failed to deserialize the JSON body into the target type: k: invalid type".
    let tail = text.rsplit("target type: ").next()?;
    let path = tail.split(": ").next()?;
    (!path.is_empty() && !path.contains(' ')).then(|| path.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serde_messages_name_their_field() {
        assert_eq!(
            field_in("Failed to deserialize the JSON body into the target type: unknown field `kk`, expected one of `question`")
                .as_deref(),
            Some("kk")
        );
        assert_eq!(
            field_in("Failed to deserialize the JSON body into the target type: missing field `question` at line 1").as_deref(),
            Some("question")
        );
        assert_eq!(
            field_in("Failed to deserialize the JSON body into the target type: k: invalid type: string \"x\", expected usize")
                .as_deref(),
            Some("k")
        );
    }

    #[test]
    fn rag_errors_keep_their_class() {
        let e = ApiError::from(RagError::invalid_input("k", "0 is out of range"));
        assert_eq!((e.status, e.field.as_deref()), (StatusCode::BAD_REQUEST, Some("k")));
        let e = ApiError::from(RagError::not_found("collection `x`", None::<&str>));
        assert_eq!(e.status, StatusCode::NOT_FOUND);
        let e = ApiError::from(RagError::EmptyCollection { collection: "x".into() });
        assert_eq!((e.status, e.code), (StatusCode::NOT_FOUND, "not_found"));
        let busy = RagError::Busy { what: "keyword index".into(), path: "/d/keyword".into(), message: "locked".into() };
        let e = ApiError::from(busy);
        assert_eq!((e.status, e.code, e.retry_after), (StatusCode::SERVICE_UNAVAILABLE, "busy", Some(1)));
        let e = ApiError::from(RagError::remote("rag serve", "answered 500", None));
        assert_eq!(e.status, StatusCode::BAD_GATEWAY);
    }
}
