//! Python exceptions classified by class: one declarative table per backend, matched against
//! the exception's MRO (what `isinstance` sees), never against message text.

use rag_core::RagError;

/// What an exception class means for the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// Retrying may succeed (connection refused, rate limit, 5xx, timeout).
    Transient,
    /// Retrying will not help (bad key, forbidden, bad request).
    Permanent,
    /// The named thing does not exist.
    NotFound,
}

/// One row: a Python class (`module.Qualname`, as `__module__` spells it), its kind, and the
/// advice appended to the message.
#[derive(Debug, Clone, Copy)]
pub struct ErrorRule {
    /// Qualified class name; subclasses match too.
    pub class: &'static str,
    /// What it means.
    pub kind: ErrorKind,
    /// What the user should do (may be empty).
    pub hint: &'static str,
}

impl ErrorRule {
    /// A row of the table.
    pub const fn new(class: &'static str, kind: ErrorKind, hint: &'static str) -> Self {
        Self { class, kind, hint }
    }
}

/// A backend's classification table; the first row whose class the exception is an instance of
/// decides. Exceptions matching no row stay [`RagError::Python`].
#[derive(Debug, Clone, Copy)]
pub struct ErrorRules {
    /// Backend name for messages (`chroma`, `qdrant`, `openai`).
    pub backend: &'static str,
    /// The rows.
    pub rules: &'static [ErrorRule],
}

impl ErrorRules {
    /// Classifies `err`, keeping the Python error (type, message, traceback) as the source.
    /// `context` names what was being done or on what (a collection), for the message.
    pub fn classify(&self, err: RagError, context: &str) -> RagError {
        let RagError::Python { exc_type, message, .. } = &err else { return err };
        let Some(rule) = self.rules.iter().find(|r| err.is_python_instance(r.class)) else { return err };
        let first_line = message.lines().next().unwrap_or(message);
        let hint = if rule.hint.is_empty() { String::new() } else { format!(" ({})", rule.hint) };
        let text = format!("{context}: {exc_type}: {first_line}{hint}");
        match rule.kind {
            ErrorKind::Transient => {
                RagError::Transient { backend: self.backend.into(), message: text, source: Some(Box::new(err)) }
            }
            ErrorKind::Permanent => {
                RagError::Permanent { backend: self.backend.into(), message: text, source: Some(Box::new(err)) }
            }
            ErrorKind::NotFound => RagError::NotFound { what: text, hint: None },
        }
    }
}

/// The exception classes of the `openai` client, which litellm's (and so DSPy's) subclass:
/// one table for every OpenAI-compatible backend.
pub const OPENAI_COMPATIBLE: &[ErrorRule] = &[
    ErrorRule::new("openai.RateLimitError", ErrorKind::Transient, ""),
    ErrorRule::new("openai.APIConnectionError", ErrorKind::Transient, "is the server reachable?"),
    ErrorRule::new("openai.InternalServerError", ErrorKind::Transient, ""),
    ErrorRule::new("litellm.exceptions.ServiceUnavailableError", ErrorKind::Transient, ""),
    ErrorRule::new("litellm.exceptions.BadGatewayError", ErrorKind::Transient, ""),
    ErrorRule::new("openai.AuthenticationError", ErrorKind::Permanent, "check the API key"),
    ErrorRule::new("openai.PermissionDeniedError", ErrorKind::Permanent, "check the API key"),
    ErrorRule::new("openai.APIStatusError", ErrorKind::Permanent, "not retried: check the model, key and input"),
];

#[cfg(test)]
mod tests {
    use super::*;

    const RULES: ErrorRules = ErrorRules {
        backend: "demo",
        rules: &[
            ErrorRule::new("httpx.TransportError", ErrorKind::Transient, "is the server running?"),
            ErrorRule::new("demo.AuthError", ErrorKind::Permanent, "check the key"),
        ],
    };

    fn py(classes: &[&str], message: &str) -> RagError {
        RagError::Python {
            exc_type: classes[0].into(),
            classes: classes.iter().map(|c| c.to_string()).collect(),
            message: message.into(),
            traceback: "tb".into(),
        }
    }

    #[test]
    fn by_class_keeping_the_source() {
        let e = RULES.classify(py(&["httpx.ConnectError", "httpx.TransportError", "Exception"], "refused"), "collection x");
        assert!(matches!(&e, RagError::Transient { message, source: Some(s), .. }
            if message.contains("collection x") && message.contains("is the server running") && matches!(**s, RagError::Python { .. })));
        // A message that merely mentions a class is not an instance of it.
        let e = RULES.classify(py(&["ValueError", "Exception"], "demo.AuthError: Connection refused"), "c");
        assert!(matches!(e, RagError::Python { .. }));
        let e = RULES.classify(py(&["demo.AuthError", "Exception"], "no"), "c");
        assert!(matches!(e, RagError::Permanent { .. }) && !e.is_retryable());
    }
}
