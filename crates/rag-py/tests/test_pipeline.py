"""The package against the real pipeline: ingest, query, search, stream, async, delete, stats."""

import asyncio
import json

import pytest

import rag_rs
from conftest import CORPUS, open_rag


def test_query_answers_with_citations_hits_and_timings(rag):
    result = rag.query("Does vitamin D prevent hip fractures?", k=3)
    assert isinstance(result, rag_rs.QueryResult)
    assert result.hits[0].doc_id == "vitd" and result.hits[0].rank == 1
    assert [h.rank for h in result.hits] == list(range(1, len(result.hits) + 1)) and len(result.hits) <= 3
    assert result.citations and result.citations[0].doc_id == "vitd"
    assert "Vitamin D" in result.answer and result.generator == "extractive"
    assert result.timings_ms["total"] > 0 and "retrieve" in result.timings_ms
    assert result.degraded == [] and not result.is_degraded
    again = rag.query("Does vitamin D prevent hip fractures?", k=3)
    assert result.query_id.startswith("q-") and len(result.query_id) == 34 and again.query_id != result.query_id


def test_search_modes_and_filters(rag):
    for mode in ("dense", "bm25", "hybrid"):
        assert rag.search("microRNA tumour growth", mode=mode, k=2).hits[0].doc_id == "mirna", mode
    hits = rag.search("blood pressure and heart", k=5, filter={"topic": "heart"}).hits
    assert {h.doc_id for h in hits} == {"statin", "sleep"}
    hits = rag.search("heart", k=5, filter={"and": [{"eq": ["topic", "heart"]}, {"gte": ["year", 2020]}]}).hits
    assert [h.doc_id for h in hits] == ["sleep"]
    assert {h.doc_id for h in rag.search("anything", k=5, filter={"topic": ["bone", "immune"]}).hits} == {"vitd", "gut"}


def test_stream_yields_the_answer_then_the_result(rag):
    stream = rag.stream("Do statins reduce mortality in heart failure?", k=2)
    assert stream.head.hits[0].doc_id == "statin" and stream.result is None
    text = "".join(stream)
    assert "Statins" in text
    assert stream.result is not None and stream.result.answer == text and stream.result.citations


def test_async_query_search_and_stream(rag):
    async def main():
        q, s = await asyncio.gather(rag.aquery("gut microbiome vaccines"), rag.asearch("sleep blood pressure", k=1))
        tokens = [t async for t in rag.astream("cholesterol statins")]
        return q, s, tokens

    q, s, tokens = asyncio.run(main())
    assert q.hits[0].doc_id == "gut" and s.hits[0].doc_id == "sleep" and "Statins" in "".join(tokens)


def test_ingest_from_an_iterable_files_and_delete(tmp_path):
    r = open_rag(tmp_path / "data")
    gen = ({"id": f"g{i}", "text": f"Generated note {i} about enzyme kinetics number {i}."} for i in range(600))
    report = r.ingest(gen, origin="gen")
    assert report.documents == 600 and report.chunks == 600
    assert r.ingest(iter(CORPUS[:1])).documents == 1
    # The same documents again: unchanged, nothing embedded.
    again = r.ingest(({"id": f"g{i}", "text": f"Generated note {i} about enzyme kinetics number {i}."} for i in range(600)),
                     origin="gen")
    assert again.unchanged == 600 and again.embedded == 0
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text("\n".join(json.dumps({"_id": d["id"] + "-file", "title": d["id"], "text": d["text"]}) for d in CORPUS))
    assert r.ingest(corpus).documents == len(CORPUS)
    assert r.stats()["documents"] == 600 + 1 + len(CORPUS)
    r.delete("g7")
    assert r.stats()["documents"] == 600 + len(CORPUS)
    with pytest.raises(rag_rs.NotFoundError, match="g7"):
        r.delete("g7")
    # Pruning an origin removes what a later ingest of it no longer yields.
    pruned = r.ingest([{"id": "g1", "text": "Generated note 1 about enzyme kinetics number 1."}], origin="gen", prune=True)
    assert pruned.removed == 598


def test_bad_documents_are_refused_by_position_and_lose_nothing(tmp_path):
    r = open_rag(tmp_path)
    r.ingest(CORPUS[:2])
    bad = [CORPUS[2], {"id": "x", "text": 42}]
    with pytest.raises(rag_rs.InvalidInputError, match=r"documents\[1\]\.text"):
        r.ingest(bad)
    with pytest.raises(rag_rs.InvalidInputError, match=r"documents\[0\]\.metadata\['m'\]"):
        r.ingest([{"id": "y", "text": "t", "metadata": {"m": {"nested": 1}}}])
    with pytest.raises(rag_rs.InvalidInputError, match="unknown field"):
        r.ingest([{"id": "y", "txt": "typo"}])
    # A list is checked before anything is written: the good document before the bad one is not stored.
    assert r.stats()["documents"] == 2

    def broken():
        yield CORPUS[3]
        raise OSError("the feed went away")

    with pytest.raises(OSError, match="feed went away"):
        r.ingest(broken(), origin="feed")
    assert r.search("sleep blood pressure adolescents", k=1).hits[0].doc_id in {"sleep", "vitd", "mirna"}
    assert r.stats()["documents"] >= 2  # what was stored before stays


def test_bad_arguments_name_themselves(rag, tmp_path):
    cases = [
        (lambda: rag.query("q", k=0), "k"),
        (lambda: rag.query("q", k="3"), "k"),
        (lambda: rag.query("q", mode="bm52"), "mode"),
        (lambda: rag.query(42), "question"),
        (lambda: rag.query("q", filter={}), "filter"),
        (lambda: rag.query("q", filter={"eq": ["topic"]}), "filter"),
        (lambda: rag.ingest(12), "source"),
        (lambda: rag.delete(3), "doc_id"),
    ]
    for call, name in cases:
        with pytest.raises(rag_rs.InvalidInputError) as e:
            call()
        assert name in str(e.value), (name, str(e.value))
        assert isinstance(e.value, ValueError)
    with pytest.raises(rag_rs.RagError, match="retrieval.mdoe"):
        rag_rs.Rag(data_dir=tmp_path, settings={"retrieval.mdoe": "dense"})
    with pytest.raises(rag_rs.RagError, match="retrieval.k"):
        rag_rs.Rag(data_dir=tmp_path, settings={"retrieval.k": "many"})
    with pytest.raises(rag_rs.InvalidInputError, match="settings"):
        rag_rs.Rag(data_dir=tmp_path, settings={"store.qdrant.tenant_keys": ["t"]})
    with pytest.raises(rag_rs.RagIOError, match="nope.toml"):
        rag_rs.Rag(tmp_path / "nope.toml")


def test_two_collections_of_one_data_directory(tmp_path):
    # One process opens the embedding cache once: the second Rag shares the first one's models.
    a = rag_rs.Rag(data_dir=tmp_path, collection="a")
    b = rag_rs.Rag(data_dir=tmp_path, collection="b")
    a.ingest(CORPUS[:2])
    b.ingest(CORPUS[2:])
    assert (a.stats()["documents"], b.stats()["documents"]) == (2, 3)
    assert {h.doc_id for h in a.search("statins", k=5).hits} <= {"vitd", "mirna"}
    assert b.search("statins cholesterol", k=1).hits[0].doc_id == "statin"


def test_the_version_and_stats(rag):
    assert rag_rs.__version__ == "0.1.0"
    stats = rag.stats()
    assert stats["documents"] == len(CORPUS) and stats["collection"] == "rag"
