"""What rag_rs returns: plain frozen dataclasses built from the pipeline's results."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, kw_only=True)
class Passage:
    """A chunk as rag reports it: ids, score, text, its byte span in the document, and where it
    came from."""

    chunk_id: str
    doc_id: str
    score: float
    text: str
    span: tuple[int, int]
    source: str | None = None
    title: str | None = None
    pages: tuple[int, int] | None = None

    @classmethod
    def _fields_from(cls, d: dict[str, Any]) -> dict[str, Any]:
        return {"chunk_id": d["chunk_id"], "doc_id": d["doc_id"], "score": d["score"], "text": d["text"],
                "span": tuple(d["span"]), "source": d.get("source"), "title": d.get("title"),
                "pages": _pages(d.get("pages"))}


@dataclass(frozen=True, kw_only=True)
class Hit(Passage):
    """One ranked chunk of a retrieval (``rank`` from 1)."""

    rank: int

    @classmethod
    def _from(cls, d: dict[str, Any]) -> Hit:
        return cls(rank=d["rank"], **cls._fields_from(d))


@dataclass(frozen=True, kw_only=True)
class Citation(Passage):
    """One passage an answer cites: ``number`` is what ``[n]`` in the answer refers to."""

    number: int

    @classmethod
    def _from(cls, d: dict[str, Any]) -> Citation:
        return cls(number=d["number"], **cls._fields_from(d))


@dataclass(frozen=True)
class QueryResult:
    """An answer with its citations, the hits retrieval ranked, per-stage timings (ms) and what
    degraded (a component that failed and what stood in for it)."""

    answer: str
    generator: str
    citations: list[Citation]
    hits: list[Hit]
    timings_ms: dict[str, float]
    degraded: list[str]
    reasoning: str | None = None
    query_id: str = ""
    """This answer's id (`q-` and 32 hex digits): what a judgment of it names (`rag serve`'s
    POST /v1/collections/{c}/feedback)."""

    @property
    def is_degraded(self) -> bool:
        return bool(self.degraded)

    @classmethod
    def _from(cls, d: dict[str, Any]) -> QueryResult:
        return cls(answer=d["answer"], generator=d["generator"], reasoning=d.get("reasoning"),
                   citations=[Citation._from(c) for c in d["citations"]], hits=[Hit._from(h) for h in d["hits"]],
                   timings_ms=dict(d["timings_ms"]), degraded=list(d["degraded"]), query_id=d.get("query_id", ""))


@dataclass(frozen=True)
class SearchResult:
    """Ranked hits without an answer."""

    hits: list[Hit]
    timings_ms: dict[str, float]
    degraded: list[str]

    @classmethod
    def _from(cls, d: dict[str, Any]) -> SearchResult:
        return cls(hits=[Hit._from(h) for h in d["hits"]], timings_ms=dict(d["timings_ms"]), degraded=list(d["degraded"]))


@dataclass(frozen=True)
class IngestReport:
    """What an ingest did."""

    documents: int
    chunks: int
    embedded: int
    cache_hits: int
    unchanged: int
    removed: int
    skipped: list[dict[str, str]] = field(default_factory=list)
    seconds: float = 0.0

    @classmethod
    def _from(cls, d: dict[str, Any]) -> IngestReport:
        return cls(documents=d["documents"], chunks=d["chunks"], embedded=d["embedded"], cache_hits=d["cache_hits"],
                   unchanged=d["unchanged"], removed=d["removed"], skipped=list(d["skipped"]), seconds=d["seconds"])

    def __add__(self, other: IngestReport) -> IngestReport:
        return IngestReport(*(getattr(self, f) + getattr(other, f) for f in
                              ("documents", "chunks", "embedded", "cache_hits", "unchanged", "removed", "skipped", "seconds")))


def _pages(p: dict[str, int] | None) -> tuple[int, int] | None:
    return None if p is None else (p["first"], p["last"])
