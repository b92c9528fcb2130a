"""LlamaIndex adapter: rag as a ``BaseRetriever`` (use it in a ``RetrieverQueryEngine``), and
ingestion of LlamaIndex ``Document``s. Needs ``llama-index-core``."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from llama_index.core.retrievers import BaseRetriever
from llama_index.core.schema import BaseNode, NodeWithScore, QueryBundle, TextNode

from ._rag import Rag
from ._types import Hit, IngestReport
from .errors import InvalidInputError

__all__ = ["RagRetriever", "ingest_documents"]


class RagRetriever(BaseRetriever):
    """Retrieves through a ``rag_rs.Rag``: each hit a ``TextNode`` (id = rag's chunk id) scored
    by rag's fused (or reranked) score, with the document id, title, source and span in its
    metadata. ``k``, ``mode`` and ``filter`` default to the pipeline's configuration."""

    def __init__(self, rag: Rag, *, k: int | None = None, mode: str | None = None,
                 filter: Mapping[str, Any] | None = None, **kwargs: Any) -> None:
        if not isinstance(rag, Rag):
            raise InvalidInputError(f"rag: expected a rag_rs.Rag, got {type(rag).__name__}")
        self._rag, self._k, self._mode, self._filter = rag, k, mode, filter
        super().__init__(**kwargs)

    def _retrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        result = self._rag.search(query_bundle.query_str, k=self._k, mode=self._mode, filter=self._filter)
        return [_node(h) for h in result.hits]

    async def _aretrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        result = await self._rag.asearch(query_bundle.query_str, k=self._k, mode=self._mode, filter=self._filter)
        return [_node(h) for h in result.hits]


def _node(h: Hit) -> NodeWithScore:
    metadata: dict[str, Any] = {"doc_id": h.doc_id, "rank": h.rank, "span": list(h.span)}
    for key in ("title", "source"):
        if getattr(h, key) is not None:
            metadata[key] = getattr(h, key)
    node = TextNode(id_=h.chunk_id, text=h.text, metadata=metadata, start_char_idx=None, end_char_idx=None)
    return NodeWithScore(node=node, score=float(h.score))


def ingest_documents(rag: Rag, documents: Iterable[BaseNode], *, origin: str = "llama-index",
                     prune: bool = False) -> IngestReport:
    """Ingests LlamaIndex ``Document``s (or any nodes with text): the id is the node's id
    (``doc_id``), metadata values that are not str/int/float/bool (or lists of str) are kept as
    their ``str()``. Chunking is rag's own."""

    def convert() -> Iterable[dict[str, Any]]:
        for i, d in enumerate(documents):
            if not isinstance(d, BaseNode):
                raise InvalidInputError(f"documents[{i}]: expected a LlamaIndex Document, got {type(d).__name__}")
            yield {"id": d.node_id, "text": d.get_content(), "metadata": _metadata(d.metadata)}

    return rag.ingest(convert(), origin=origin, prune=prune)


def _metadata(m: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in m.items():
        if isinstance(v, (str, int, float, bool)) or (isinstance(v, list) and all(isinstance(x, str) for x in v)):
            out[str(k)] = v
        elif v is not None:
            out[str(k)] = str(v)
    return out
