//! The one error type of the workspace.
//!
//! Every backend maps its failures into [`RagError`]; every message says what failed and what
//! to do about it, because the `rag` binary prints them to users as they are.

use std::path::PathBuf;
use std::time::Duration;

/// Result alias used across the workspace.
pub type Result<T, E = RagError> = std::result::Result<T, E>;

/// Everything that can go wrong in a RAG pipeline.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RagError {
    /// A setting is missing or inconsistent.
    #[error("configuration error: {message}")]
    Config {
        /// What is wrong and how to fix it.
        message: String,
    },

    /// A caller gave input the component cannot accept.
    #[error("invalid input ({input}): {message}")]
    InvalidInput {
        /// Which input (a file and line, an argument, a field).
        input: String,
        /// What is wrong with it and what to do.
        message: String,
    },

    /// A collection, document, file or model that does not exist.
    #[error("not found: {what}{}", hint_suffix(.hint))]
    NotFound {
        /// What was looked for.
        what: String,
        /// What to do about it, if known.
        hint: Option<String>,
    },

    /// A vector has a different length than the collection or model expects.
    #[error(
        "dimension mismatch in {context}: expected {expected}, got {actual} (use an embedder of dimension {expected}, or a new collection)"
    )]
    DimensionMismatch {
        /// Where the mismatch was seen (collection name, model).
        context: String,
        /// The dimension the target expects.
        expected: usize,
        /// The dimension that was given.
        actual: usize,
    },

    /// A backend failed in a way that may succeed if retried (rate limit, 5xx, connection reset).
    #[error("{backend} failed (transient, retry may succeed): {message}")]
    Transient {
        /// Which backend failed.
        backend: String,
        /// What happened.
        message: String,
        /// The error this was classified from (a Python exception keeps its type and traceback).
        #[source]
        source: Option<Box<RagError>>,
    },

    /// A backend failed in a way that retrying will not fix (bad key, bad request, corrupt data).
    #[error("{backend} failed: {message}")]
    Permanent {
        /// Which backend failed.
        backend: String,
        /// What happened and what to do.
        message: String,
        /// The error this was classified from (a Python exception keeps its type and traceback).
        #[source]
        source: Option<Box<RagError>>,
    },

    /// A Python exception raised inside a call into the embedded interpreter.
    #[error("Python {exc_type}: {message}\n{traceback}")]
    Python {
        /// The exception's type, qualified (`ValueError`, `chromadb.errors.NotFoundError`).
        exc_type: String,
        /// Every class in the exception's MRO, qualified, most derived first: what
        /// `isinstance` sees, so errors are classified by class, never by message text.
        classes: Vec<String>,
        /// `str(exception)`.
        message: String,
        /// The formatted Python traceback (may be empty).
        traceback: String,
    },

    /// A Python package the requested backend needs is not installed in the venv.
    #[error("Python package `{package}` is missing from {venv}: run `{setup_command}`")]
    PythonPackageMissing {
        /// The import name that failed.
        package: String,
        /// Which interpreter / venv was searched.
        venv: String,
        /// The set-up command that installs it.
        setup_command: String,
    },

    /// An operation took longer than allowed.
    #[error("timed out after {after:?}: {what}")]
    Timeout {
        /// What was being done.
        what: String,
        /// The limit that passed.
        after: Duration,
    },

    /// A file-system error, with the path it concerns.
    #[error("I/O error on {}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },

    /// A collection holds nothing yet, so there is nothing to search.
    #[error("collection `{collection}` is empty: nothing has been ingested into it")]
    EmptyCollection {
        /// The collection.
        collection: String,
    },

    /// A file or index another process holds (a writer lock, a database file).
    #[error("{what} at {} is in use by another process: {message}", path.display())]
    Busy {
        /// What is held (`keyword index`, `ingest manifest`).
        what: String,
        /// Its path.
        path: PathBuf,
        /// What the holder's lock said.
        message: String,
    },

    /// A value that could not be read from, or written as, JSON.
    #[error("{what}: {source}")]
    Json {
        /// What was read or written (`rag serve's answer`, `the program's spec`).
        what: String,
        /// The parser's or serialiser's error.
        #[source]
        source: serde_json::Error,
    },

    /// Something of the pipeline's own broke (a worker thread stopped, a task panicked, a part
    /// returned fewer results than asked): a bug or a crash, never bad input.
    #[error("internal error: {what}{}", source_suffix(.source))]
    Internal {
        /// What broke.
        what: String,
        /// The cause, when there is one (a join error, a panic's message).
        #[source]
        source: Option<BoxError>,
    },

    /// A peer over the network (`rag serve`, an MCP transport, an HTTP client) failed or
    /// answered something unexpected.
    #[error("{peer}: {message}")]
    Remote {
        /// Who (`rag serve at http://…`, `MCP over stdio`).
        peer: String,
        /// What happened.
        message: String,
        /// The transport's error, when there is one.
        #[source]
        source: Option<BoxError>,
    },

    /// Anything else, with context.
    #[error("{0}")]
    Other(String),
}

/// A boxed error kept as a cause.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

fn source_suffix(source: &Option<BoxError>) -> String {
    match source {
        Some(s) => format!(": {s}"),
        None => String::new(),
    }
}

fn hint_suffix(hint: &Option<String>) -> String {
    match hint {
        Some(h) => format!(" ({h})"),
        None => String::new(),
    }
}

impl RagError {
    /// Shorthand for [`RagError::Config`].
    pub fn config(message: impl Into<String>) -> Self {
        Self::Config { message: message.into() }
    }

    /// Shorthand for [`RagError::InvalidInput`].
    pub fn invalid_input(input: impl Into<String>, message: impl Into<String>) -> Self {
        Self::InvalidInput { input: input.into(), message: message.into() }
    }

    /// Shorthand for [`RagError::NotFound`].
    pub fn not_found(what: impl Into<String>, hint: Option<&str>) -> Self {
        Self::NotFound { what: what.into(), hint: hint.map(str::to_owned) }
    }

    /// Shorthand for [`RagError::Json`].
    pub fn json(what: impl Into<String>, source: serde_json::Error) -> Self {
        Self::Json { what: what.into(), source }
    }

    /// Shorthand for [`RagError::Internal`] without a cause.
    pub fn internal(what: impl Into<String>) -> Self {
        Self::Internal { what: what.into(), source: None }
    }

    /// Shorthand for [`RagError::Internal`] with its cause.
    pub fn internal_from(what: impl Into<String>, source: impl Into<BoxError>) -> Self {
        Self::Internal { what: what.into(), source: Some(source.into()) }
    }

    /// Shorthand for [`RagError::Remote`]; `source` is the transport's error, if any.
    pub fn remote(peer: impl Into<String>, message: impl Into<String>, source: Option<BoxError>) -> Self {
        Self::Remote { peer: peer.into(), message: message.into(), source }
    }

    /// Shorthand for [`RagError::Transient`] with no source.
    pub fn transient(backend: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Transient { backend: backend.into(), message: message.into(), source: None }
    }

    /// Shorthand for [`RagError::Permanent`] with no source.
    pub fn permanent(backend: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Permanent { backend: backend.into(), message: message.into(), source: None }
    }

    /// Whether this is a Python exception that is an instance of `class` (qualified name, as
    /// `module.Class`; builtins unqualified).
    pub fn is_python_instance(&self, class: &str) -> bool {
        matches!(self, Self::Python { classes, .. } if classes.iter().any(|c| c == class))
    }

    /// Shorthand for [`RagError::Io`].
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io { path: path.into(), source }
    }

    /// Whether retrying the same call may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Transient { .. } | Self::Timeout { .. })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_the_input_and_the_fix() {
        let e = RagError::DimensionMismatch { context: "collection docs".into(), expected: 384, actual: 768 };
        let s = e.to_string();
        assert!(s.contains("384") && s.contains("768") && s.contains("collection docs"), "{s}");
        let e = RagError::not_found("collection `x`", Some("ingest into it first"));
        assert_eq!(e.to_string(), "not found: collection `x` (ingest into it first)");
        assert!(RagError::transient("redis", "reset").is_retryable());
        assert!(!RagError::permanent("openai", "bad key").is_retryable());
    }
}
