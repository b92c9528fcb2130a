"""The GIL is released while Rust works: Python threads run beside rag's calls, and concurrent
queries each get their own answers."""

import threading
import time
from concurrent.futures import ThreadPoolExecutor

from conftest import CORPUS, open_rag

QUESTIONS = {
    "vitd": "vitamin D hip fractures older adults",
    "mirna": "microRNA gene expression tumour",
    "statin": "statins cholesterol mortality heart failure",
    "sleep": "sleep quality blood pressure adolescents",
    "gut": "gut microbiome vaccines infants",
}


def test_concurrent_queries_each_get_their_own_answer(rag):
    jobs = [doc for doc in QUESTIONS for _ in range(8)]
    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(lambda doc: rag.query(QUESTIONS[doc], k=2), jobs))
    assert [r.hits[0].doc_id for r in results] == jobs


def test_python_threads_run_while_rag_works(tmp_path):
    r = open_rag(tmp_path)
    docs = [{"id": f"d{i}", "text": f"{CORPUS[i % len(CORPUS)]['text']} Variant {i} of the note."} for i in range(400)]
    ticks = 0
    stop = threading.Event()

    def spin():
        # Pure Python: it can only run while it holds the GIL.
        nonlocal ticks
        while not stop.is_set():
            ticks += 1

    spinner = threading.Thread(target=spin)
    spinner.start()
    start = time.perf_counter()
    # Rust work in this thread, new documents each round until there is enough of it to measure
    # (a count of rounds, not this machine's speed, bounds the test).
    for round_ in range(20):
        r.ingest([{**d, "id": f"{d['id']}-{round_}"} for d in docs])
        if time.perf_counter() - start > 0.5:
            break
    elapsed = time.perf_counter() - start
    stop.set()
    spinner.join()
    # Were the GIL held through the ingest, the spinner would run only in the few milliseconds of
    # Python around the call; released, it loops millions of times a second (on 2 busy cores, a
    # hundred thousand at the very least).
    assert elapsed > 0.5, f"20 ingests were too quick ({elapsed:.2f} s) to tell"
    assert ticks > elapsed * 100_000, f"{ticks} loops in {elapsed:.2f} s: the GIL was held"
