"""LangChain adapter: rag as a ``BaseRetriever`` (sync and async; use it in any LCEL chain).
Needs ``langchain-core``."""

from __future__ import annotations

from typing import Any

from langchain_core.callbacks import AsyncCallbackManagerForRetrieverRun, CallbackManagerForRetrieverRun
from langchain_core.documents import Document
from langchain_core.retrievers import BaseRetriever
from pydantic import ConfigDict, field_validator

from ._rag import Rag
from ._types import Hit
from .errors import InvalidInputError

__all__ = ["RagRetriever"]


class RagRetriever(BaseRetriever):
    """Retrieves through a ``rag_rs.Rag``: each hit a ``Document`` (id = rag's chunk id) with the
    document id, score, rank, title, source and span in its metadata. ``k``, ``mode`` and
    ``filter`` default to the pipeline's configuration."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    rag: Any
    k: int | None = None
    mode: str | None = None
    filter: dict[str, Any] | None = None

    @field_validator("rag")
    @classmethod
    def _is_rag(cls, v: Any) -> Rag:
        if not isinstance(v, Rag):
            raise InvalidInputError(f"rag: expected a rag_rs.Rag, got {type(v).__name__}")
        return v

    def _get_relevant_documents(self, query: str, *, run_manager: CallbackManagerForRetrieverRun) -> list[Document]:
        return [_document(h) for h in self.rag.search(query, k=self.k, mode=self.mode, filter=self.filter).hits]

    async def _aget_relevant_documents(self, query: str, *,
                                       run_manager: AsyncCallbackManagerForRetrieverRun) -> list[Document]:
        result = await self.rag.asearch(query, k=self.k, mode=self.mode, filter=self.filter)
        return [_document(h) for h in result.hits]


def _document(h: Hit) -> Document:
    metadata: dict[str, Any] = {"doc_id": h.doc_id, "score": h.score, "rank": h.rank, "span": list(h.span)}
    for key in ("title", "source"):
        if getattr(h, key) is not None:
            metadata[key] = getattr(h, key)
    return Document(page_content=h.text, metadata=metadata, id=h.chunk_id)
