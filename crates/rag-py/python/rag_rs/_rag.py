"""``Rag``: one open pipeline (a collection) over the Rust core."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping, Sequence
from typing import Any

from . import _native
from ._types import IngestReport, QueryResult, SearchResult
from .errors import InvalidInputError

__all__ = ["Rag", "AnswerStream", "Document"]

#: Documents sent to the Rust side per call while ingesting an iterable.
PUSH_BATCH = 256
_MODES = ("dense", "bm25", "hybrid")
_OPERATORS = {"eq", "ne", "in", "nin", "gt", "gte", "lt", "lte", "and", "or"}

#: A document to ingest: ``{"id": str, "text": str, "metadata": {str: str | int | float | bool | list[str]}}``.
Document = Mapping[str, Any]


class Rag:
    """A pipeline over one collection, configured like the ``rag`` command.

    ``config`` is a rag.toml (default: ./rag.toml if present, else the defaults); then the
    ``RAG_*`` environment; then ``settings`` (dotted keys as in ``rag --set``, e.g.
    ``{"retrieval.mode": "hybrid", "store.backend": "qdrant"}``); ``data_dir`` and
    ``collection`` last. A misspelled key or a bad value raises ``ConfigError`` /
    ``InvalidInputError`` naming it.

    Every method releases the GIL while Rust works: call it from as many threads as you like.
    """

    def __init__(self, config: str | os.PathLike[str] | None = None, *, data_dir: str | os.PathLike[str] | None = None,
                 collection: str | None = None, settings: Mapping[str, Any] | None = None) -> None:
        if settings is not None and not isinstance(settings, Mapping):
            raise InvalidInputError(f"settings: expected a dict of dotted keys to values, got {type(settings).__name__}")
        if collection is not None and not isinstance(collection, str):
            raise InvalidInputError(f"collection: expected a str, got {type(collection).__name__}")
        pairs = [(_key(k), _setting(k, v)) for k, v in (settings or {}).items()]
        self._native = _native.open(_path("config", config), _path("data_dir", data_dir), collection, pairs)

    @property
    def collection(self) -> str:
        """The collection's name."""
        return self._native.collection

    def ingest(self, source: str | os.PathLike[str] | Sequence[str | os.PathLike[str]] | Iterable[Document], *,
               origin: str = "python", prune: bool = False) -> IngestReport:
        """Ingests files and folders (a path or a list of paths: every format ``rag ingest``
        reads), or documents (dicts with ``id``, ``text`` and optional ``metadata``, from a list
        or any iterable, read lazily). Unchanged documents are skipped by content hash.

        A list of documents is checked whole before anything is written; an iterable is checked
        as it is read, and a bad item stops the ingest with ``InvalidInputError`` naming its
        position (documents before it stay ingested). ``prune`` removes the documents of
        ``origin`` (or of the folders given) that this ingest did not yield.
        """
        if isinstance(source, (str, os.PathLike)):
            return IngestReport._from(json.loads(self._native.ingest_paths([os.fspath(source)], prune)))
        if isinstance(source, Sequence) and source and all(isinstance(s, (str, os.PathLike)) for s in source):
            return IngestReport._from(json.loads(self._native.ingest_paths([os.fspath(s) for s in source], prune)))
        if isinstance(source, Mapping) or not isinstance(source, Iterable):
            raise InvalidInputError(f"source: expected a path, a list of paths or an iterable of documents, got "
                                    f"{type(source).__name__}")
        if not isinstance(origin, str) or not origin:
            raise InvalidInputError("origin: expected a non-empty str")
        if isinstance(source, Sequence):
            docs = [_document(i, d) for i, d in enumerate(source)]  # all checked before anything is written
            run = self._native.begin_ingest(origin, prune)
            for start in range(0, len(docs), PUSH_BATCH):
                if not run.push(json.dumps(docs[start:start + PUSH_BATCH])):
                    break
            return IngestReport._from(json.loads(run.finish()))
        run = self._native.begin_ingest(origin, prune)
        batch: list[dict[str, Any]] = []
        try:
            for i, d in enumerate(source):
                batch.append(_document(i, d))
                if len(batch) == PUSH_BATCH:
                    if not run.push(json.dumps(batch)):
                        break
                    batch = []
            if batch:
                run.push(json.dumps(batch))
        except BaseException as e:
            run.abort(f"the documents' iterable raised {type(e).__name__}: {e}")
            try:
                run.finish()
            except Exception:  # noqa: BLE001 - the caller's own error is the one to raise
                pass
            raise
        return IngestReport._from(json.loads(run.finish()))

    def query(self, question: str, *, k: int | None = None, mode: str | None = None, rerank: bool | None = None,
              filter: Mapping[str, Any] | None = None) -> QueryResult:
        """Retrieves, packs the context and answers (extractively, or with the configured LM).

        ``mode`` is ``dense``, ``bm25`` or ``hybrid``; ``filter`` is ``{"field": value, ...}``
        (all must hold; a list value means any of) or rag's filter form
        (``{"and": [{"eq": ["lang", "en"]}, {"gte": ["year", 2020]}]}``).
        """
        return QueryResult._from(json.loads(self._native.query(_question(question), _options(k, mode, rerank, filter))))

    def search(self, question: str, *, k: int | None = None, mode: str | None = None, rerank: bool | None = None,
               filter: Mapping[str, Any] | None = None) -> SearchResult:
        """Retrieves only: the ranked hits, timings and what degraded."""
        return SearchResult._from(json.loads(self._native.search(_question(question), _options(k, mode, rerank, filter))))

    def stream(self, question: str, *, k: int | None = None, mode: str | None = None, rerank: bool | None = None,
               filter: Mapping[str, Any] | None = None) -> AnswerStream:
        """Retrieves (errors raise here), then yields the answer's tokens as they are generated.
        ``AnswerStream.result`` holds the whole ``QueryResult`` once the stream ends. Dropping the
        stream early stops the generation."""
        return AnswerStream(self._native.stream(_question(question), _options(k, mode, rerank, filter)))

    def delete(self, doc_id: str) -> None:
        """Deletes a document and every chunk of it; an unknown id raises ``NotFoundError``."""
        if not isinstance(doc_id, str):
            raise InvalidInputError(f"doc_id: expected a str, got {type(doc_id).__name__}")
        self._native.delete(doc_id)

    def stats(self) -> dict[str, Any]:
        """Documents, chunks, backends and store details of the collection."""
        return json.loads(self._native.stats())

    # Async variants: the work runs in a thread (the GIL is released), so the event loop stays free.

    async def aingest(self, source: Any, **kwargs: Any) -> IngestReport:
        """``ingest`` without blocking the event loop."""
        return await asyncio.to_thread(self.ingest, source, **kwargs)

    async def aquery(self, question: str, **kwargs: Any) -> QueryResult:
        """``query`` without blocking the event loop."""
        return await asyncio.to_thread(self.query, question, **kwargs)

    async def asearch(self, question: str, **kwargs: Any) -> SearchResult:
        """``search`` without blocking the event loop."""
        return await asyncio.to_thread(self.search, question, **kwargs)

    async def astream(self, question: str, **kwargs: Any) -> AsyncIterator[str]:
        """``stream`` as an async iterator of tokens."""
        stream = await asyncio.to_thread(self.stream, question, **kwargs)
        end = object()
        while True:
            token = await asyncio.to_thread(next, stream, end)
            if token is end:
                return
            yield token

    def __repr__(self) -> str:
        return f"Rag(collection={self.collection!r})"


class AnswerStream(Iterator[str]):
    """The tokens of an answer; ``result`` is the full ``QueryResult`` once exhausted (before
    that, ``head`` has the citations and hits)."""

    def __init__(self, native: Any) -> None:
        self._native = native
        self._head = json.loads(native.head)

    @property
    def head(self) -> QueryResult:
        """Citations, hits and timings of the retrieval (the answer still empty)."""
        return QueryResult._from(self._head)

    @property
    def result(self) -> QueryResult | None:
        """The whole result once the stream has ended, else ``None``."""
        last = self._native.last
        if last is None:
            return None
        final = json.loads(last)
        return QueryResult._from({**self._head, "answer": final["answer"], "reasoning": final.get("reasoning"),
                                  "generator": final["generator"]})

    def __iter__(self) -> AnswerStream:
        return self

    def __next__(self) -> str:
        return next(self._native)


def _path(name: str, value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, (str, os.PathLike)):
        raise InvalidInputError(f"{name}: expected a path, got {type(value).__name__}")
    return os.fspath(value)


def _key(key: Any) -> str:
    if not isinstance(key, str) or not key:
        raise InvalidInputError(f"settings: keys are dotted names such as 'retrieval.mode', got {key!r}")
    return key


def _setting(key: str, value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (str, int, float)):
        return str(value)
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    raise InvalidInputError(f"settings[{key!r}]: expected a str, number or bool, got {type(value).__name__} "
                            "(lists and tables go in a rag.toml)")


def _question(question: Any) -> str:
    if not isinstance(question, str):
        raise InvalidInputError(f"question: expected a str, got {type(question).__name__}")
    return question


def _options(k: Any, mode: Any, rerank: Any, filter: Any) -> str:
    opts: dict[str, Any] = {}
    if k is not None:
        if isinstance(k, bool) or not isinstance(k, int):
            raise InvalidInputError(f"k: expected an int, got {type(k).__name__}")
        if k < 1:
            raise InvalidInputError(f"k: {k} is out of range: use 1 or more")
        opts["k"] = k
    if mode is not None:
        if mode not in _MODES:
            raise InvalidInputError(f"mode: {mode!r} is not one of {', '.join(_MODES)}")
        opts["mode"] = mode
    if rerank is not None:
        if not isinstance(rerank, bool):
            raise InvalidInputError(f"rerank: expected a bool, got {type(rerank).__name__}")
        opts["rerank"] = rerank
    if filter is not None:
        opts["filter"] = _filter(filter)
    return json.dumps(opts)


def _filter(f: Any) -> Any:
    if not isinstance(f, Mapping) or not f:
        raise InvalidInputError("filter: expected a non-empty dict ({'field': value} or rag's filter form)")
    if len(f) == 1:
        (op, arg), = f.items()
        if op in _OPERATORS and isinstance(arg, list):
            return dict(f)  # rag's own form, checked by the Rust side
    clauses = []
    for field_name, value in f.items():
        if not isinstance(field_name, str):
            raise InvalidInputError(f"filter: field names are str, got {field_name!r}")
        clauses.append({"in": [field_name, list(value)]} if isinstance(value, (list, tuple)) else {"eq": [field_name, value]})
    return clauses[0] if len(clauses) == 1 else {"and": clauses}


def _document(i: int, d: Any) -> dict[str, Any]:
    """A document as the Rust side reads it; refuses (naming position and field) what it cannot be."""
    if not isinstance(d, Mapping):
        raise InvalidInputError(f"documents[{i}]: expected a dict with 'id' and 'text', got {type(d).__name__}")
    unknown = set(d) - {"id", "text", "metadata"}
    if unknown:
        raise InvalidInputError(f"documents[{i}]: unknown field(s) {', '.join(sorted(map(str, unknown)))}: "
                                "use 'id', 'text' and 'metadata'")
    doc_id, text = d.get("id"), d.get("text")
    if not isinstance(doc_id, str) or not doc_id:
        raise InvalidInputError(f"documents[{i}].id: expected a non-empty str, got {doc_id!r}")
    if not isinstance(text, str):
        raise InvalidInputError(f"documents[{i}].text: expected a str, got {type(text).__name__}")
    metadata = d.get("metadata") or {}
    if not isinstance(metadata, Mapping):
        raise InvalidInputError(f"documents[{i}].metadata: expected a dict, got {type(metadata).__name__}")
    for key, value in metadata.items():
        ok = isinstance(value, (str, int, float, bool)) or (
            isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value))
        if not isinstance(key, str) or not ok:
            raise InvalidInputError(f"documents[{i}].metadata[{key!r}]: values are str, int, float, bool or a list "
                                    f"of str, got {type(value).__name__}")
    return {"id": doc_id, "text": text, "metadata": {k: list(v) if isinstance(v, tuple) else v for k, v in metadata.items()}}
