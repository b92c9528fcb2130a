"""The exceptions rag_rs raises: one class per kind of failure, each also deriving from the
built-in a Python caller would catch (``NotFoundError`` is a ``KeyError``)."""

__all__ = [
    "RagError", "ConfigError", "InvalidInputError", "NotFoundError", "EmptyCollectionError",
    "TransientError", "RagTimeoutError", "BusyError", "MissingPackageError", "RagIOError", "BackendError",
]


class RagError(Exception):
    """Any error from rag. The message names the input or component and what to do."""

    def __str__(self) -> str:  # KeyError would repr() its message
        return str(self.args[0]) if self.args else ""


class ConfigError(RagError, ValueError):
    """The configuration (rag.toml, ``settings``, ``RAG_*`` variables) is wrong or incomplete."""


class InvalidInputError(RagError, ValueError):
    """An argument or document was refused; nothing already stored was touched."""


class NotFoundError(RagError, KeyError):
    """A document, collection or model does not exist."""


class EmptyCollectionError(NotFoundError):
    """The collection holds nothing yet: ingest first."""


class TransientError(RagError, ConnectionError):
    """A backend (a server, Redis) failed in a way a retry may fix."""


class RagTimeoutError(RagError, TimeoutError):
    """An operation ran past its limit."""


class BusyError(RagError, OSError):
    """A local store or index is held by another process."""


class MissingPackageError(RagError, ImportError):
    """A Python package the configured backend needs is not installed."""


class RagIOError(RagError, OSError):
    """Reading or writing a file failed."""


class BackendError(RagError):
    """A Python backend (ChromaDB, DSPy, ...) raised; the message carries its traceback."""
