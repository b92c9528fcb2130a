"""rag_rs: rag's Rust RAG pipeline in Python.

``Rag`` opens a collection from the same configuration as the ``rag`` command and ingests,
searches, answers and streams with the GIL released. Adapters: ``rag_rs.llama_index``,
``rag_rs.langchain``, ``rag_rs.dspy`` (each imports its framework only when imported).
"""

from ._native import version as _version
from ._rag import AnswerStream, Document, Rag
from ._types import Citation, Hit, IngestReport, Passage, QueryResult, SearchResult
from .errors import (
    BackendError,
    BusyError,
    ConfigError,
    EmptyCollectionError,
    InvalidInputError,
    MissingPackageError,
    NotFoundError,
    RagError,
    RagIOError,
    RagTimeoutError,
    TransientError,
)

__version__: str = _version()

__all__ = [
    "Rag", "AnswerStream", "Document", "Passage", "Hit", "Citation", "QueryResult", "SearchResult", "IngestReport",
    "RagError", "ConfigError", "InvalidInputError", "NotFoundError", "EmptyCollectionError", "TransientError",
    "RagTimeoutError", "BusyError", "MissingPackageError", "RagIOError", "BackendError",
]
