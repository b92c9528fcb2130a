"""The LangChain adapter with the real langchain-core: sync, async, and in an LCEL chain."""

import asyncio

import pytest
from langchain_core.documents import Document
from langchain_core.runnables import RunnableLambda

import rag_rs
from rag_rs.langchain import RagRetriever


def test_invoke_and_ainvoke(rag):
    retriever = RagRetriever(rag=rag, k=2)
    docs = retriever.invoke("statins and heart failure mortality")
    assert all(isinstance(d, Document) for d in docs) and len(docs) <= 2
    assert docs[0].metadata["doc_id"] == "statin" and docs[0].id and "Statins" in docs[0].page_content
    adocs = asyncio.run(retriever.ainvoke("microRNA in cancer"))
    assert adocs[0].metadata["doc_id"] == "mirna"
    filtered = RagRetriever(rag=rag, k=5, filter={"topic": "heart"}).invoke("anything")
    assert {d.metadata["doc_id"] for d in filtered} == {"statin", "sleep"}


def test_in_an_lcel_chain(rag):
    def context(docs):
        return "\n".join(f"[{d.metadata['doc_id']}] {d.page_content}" for d in docs)

    chain = RagRetriever(rag=rag, k=1, mode="bm25") | RunnableLambda(context)
    assert chain.invoke("vaccines in infants").startswith("[gut]")
    assert asyncio.run(chain.ainvoke("blood pressure adolescents")).startswith("[sleep]")


def test_wrong_arguments(rag):
    with pytest.raises(ValueError, match="rag_rs.Rag"):  # pydantic's ValidationError
        RagRetriever(rag="not a rag")
    with pytest.raises(rag_rs.InvalidInputError, match="mode"):
        RagRetriever(rag=rag, mode="bm52").invoke("q")
