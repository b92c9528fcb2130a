"""Fixtures of the rag_rs test suite: a pipeline on the embedded default (ChromaDB + MiniLM
through ONNX Runtime + the tantivy keyword index) over a small corpus written here."""

import pytest

import rag_rs

CORPUS = [
    {"id": "vitd", "text": "Vitamin D supplementation reduces the risk of hip fractures in older adults.",
     "metadata": {"topic": "bone", "year": 2019}},
    {"id": "mirna", "text": "MicroRNA molecules regulate gene expression and drive tumour growth in cancer cells.",
     "metadata": {"topic": "cancer", "year": 2021}},
    {"id": "statin", "text": "Statins lower cholesterol and reduce mortality in patients with heart failure.",
     "metadata": {"topic": "heart", "year": 2018}},
    {"id": "sleep", "text": "Poor sleep quality is associated with higher blood pressure in adolescents.",
     "metadata": {"topic": "heart", "year": 2022}},
    {"id": "gut", "text": "The gut microbiome shapes immune responses to vaccines in infants.",
     "metadata": {"topic": "immune", "year": 2020}},
]


def open_rag(path, **settings):
    return rag_rs.Rag(data_dir=path, settings={"retrieval.mode": "hybrid", **settings})


@pytest.fixture(scope="module")
def rag(tmp_path_factory):
    r = open_rag(tmp_path_factory.mktemp("rag"))
    report = r.ingest(CORPUS)
    assert report.documents == len(CORPUS) and report.chunks >= len(CORPUS)
    return r
