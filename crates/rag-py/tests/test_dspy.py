"""The DSPy adapter with the real DSPy: dspy.Retrieve through rag, and rag optimize's programs
(crates/rag-dspy/src/rag_dspy.py, loaded unchanged) retrieving through it. The LM is DSPy's
DummyLM: these tests are about retrieval, not generation."""

import importlib.util
import pathlib

import dspy
from dspy.utils.dummies import DummyLM

from rag_rs.dspy import RagRM

PROGRAMS = pathlib.Path(__file__).resolve().parents[2] / "rag-dspy" / "src" / "rag_dspy.py"


def load_programs():
    spec = importlib.util.spec_from_file_location("rag_dspy_programs", PROGRAMS)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_retrieve_goes_through_rag(rag):
    rm = RagRM(rag, k=2)
    with dspy.context(rm=rm):
        passages = dspy.Retrieve(k=1)("hip fractures and vitamin D").passages
    assert len(passages) == 1 and passages[0].startswith("Vitamin D")
    assert rm.passages("microRNA")[0].startswith("MicroRNA")
    several = rm(["statins", "sleep blood pressure"], k=2)
    assert {p.doc_id for p in several} == {"statin", "sleep"}


def test_rag_optimize_programs_unchanged(rag):
    programs = load_programs()
    lm = DummyLM([{"reasoning": "r", "answer": "Yes [1]"}] * 4)
    with dspy.context(rm=RagRM(rag), lm=lm):
        prediction = programs.BasicRag(k=2)(question="Does vitamin D reduce hip fractures?")
    assert prediction.answer == "Yes [1]"
    assert prediction.passages[0].startswith("Vitamin D") and len(prediction.passages) == 2
    lm = DummyLM([{"reasoning": "r", "query": "statins heart failure"}, {"reasoning": "r", "query": "gut vaccines"},
                  {"reasoning": "r", "answer": "Both [1][2]"}])
    with dspy.context(rm=RagRM(rag), lm=lm):
        prediction = programs.MultiHopRag(max_hops=2, k=1)(question="statins and vaccines?")
    assert [h["passages"][0][:7] for h in prediction.hops] == ["Statins", "The gut"]
