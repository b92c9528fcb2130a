"""DSPy adapter: rag as DSPy's retrieval model. ``dspy.configure(rm=RagRM(rag))`` makes every
``dspy.Retrieve(k)`` in a program (``rag optimize``'s BasicRag and MultiHopRag included)
retrieve through rag; ``RagRM`` is also a plain callable ``(query, k) -> passages``. Needs
``dspy``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from dspy.dsp.utils import dotdict

from ._rag import Rag
from .errors import InvalidInputError

__all__ = ["RagRM"]


class RagRM:
    """A DSPy retrieval model over a ``rag_rs.Rag``: returns passages as DSPy expects them
    (objects with ``long_text``, plus ``score``, ``doc_id`` and ``chunk_id``)."""

    def __init__(self, rag: Rag, *, k: int = 3, mode: str | None = None, filter: Mapping[str, Any] | None = None) -> None:
        if not isinstance(rag, Rag):
            raise InvalidInputError(f"rag: expected a rag_rs.Rag, got {type(rag).__name__}")
        self.rag, self.k, self.mode, self.filter = rag, k, mode, filter

    def __call__(self, query_or_queries: str | list[str], k: int | None = None, **kwargs: Any) -> list[dotdict]:
        queries = [query_or_queries] if isinstance(query_or_queries, str) else list(query_or_queries)
        k = k if k is not None else self.k
        passages: list[dotdict] = []
        seen: set[str] = set()
        for q in queries:
            for h in self.rag.search(q, k=k, mode=self.mode, filter=self.filter).hits:
                if h.chunk_id not in seen:
                    seen.add(h.chunk_id)
                    passages.append(dotdict(long_text=h.text, score=h.score, doc_id=h.doc_id, chunk_id=h.chunk_id))
        if len(queries) > 1:  # several queries: the best k over all of them (scores are comparable)
            passages.sort(key=lambda p: -p.score)
            passages = passages[:k]
        return passages

    def passages(self, query: str, k: int | None = None) -> list[str]:
        """Just the passage texts, best first."""
        return [p.long_text for p in self(query, k=k)]
