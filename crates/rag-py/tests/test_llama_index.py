"""The LlamaIndex adapter with the real llama-index-core."""

import asyncio

from llama_index.core import Document, Settings
from llama_index.core.llms import MockLLM
from llama_index.core.query_engine import RetrieverQueryEngine
from llama_index.core.response_synthesizers import get_response_synthesizer
from llama_index.core.schema import NodeWithScore, QueryBundle, TextNode

import rag_rs
from rag_rs.llama_index import RagRetriever, ingest_documents
from conftest import open_rag


def test_documents_in_nodes_out(tmp_path):
    r = open_rag(tmp_path)
    docs = [Document(text="Aspirin lowers the risk of a second heart attack.", doc_id="aspirin", metadata={"year": 2015}),
            Document(text="Exercise improves insulin sensitivity in type 2 diabetes.", doc_id="exercise",
                     metadata={"tags": ["metabolic"], "when": object()})]
    report = ingest_documents(r, docs)
    assert report.documents == 2
    retriever = RagRetriever(r, k=2)
    nodes = retriever.retrieve("Does aspirin prevent heart attacks?")
    assert all(isinstance(n, NodeWithScore) and isinstance(n.node, TextNode) for n in nodes)
    assert nodes[0].node.metadata["doc_id"] == "aspirin" and "Aspirin" in nodes[0].node.get_content()
    assert nodes[0].score >= nodes[-1].score
    assert r.search("insulin", k=1, filter={"year": 2015}).hits[0].doc_id == "aspirin"
    anodes = asyncio.run(retriever.aretrieve(QueryBundle("insulin sensitivity exercise")))
    assert anodes[0].node.metadata["doc_id"] == "exercise"


def test_in_a_retriever_query_engine(rag):
    # LlamaIndex's MockLLM and the no_text mode: the engine returns the retrieved nodes as its sources.
    # (Settings too: NoText falls back to Settings.llm, which would look for OpenAI.)
    Settings.llm = MockLLM()
    synthesizer = get_response_synthesizer(llm=Settings.llm, response_mode="no_text")
    engine = RetrieverQueryEngine(retriever=RagRetriever(rag, k=3, mode="hybrid"), response_synthesizer=synthesizer)
    response = engine.query("gut microbiome and vaccines")
    assert response.source_nodes[0].node.metadata["doc_id"] == "gut"
    assert len(response.source_nodes) <= 3


def test_wrong_arguments():
    try:
        RagRetriever("not a rag")
    except rag_rs.InvalidInputError as e:
        assert "rag_rs.Rag" in str(e)
    else:
        raise AssertionError("a non-Rag was accepted")
