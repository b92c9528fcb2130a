"""A soak of one `rag serve`: mixed query / search / streamed query / ingest / delete traffic
from three keys (one without a tenant, two tenants sharing the collection) at a fixed
concurrency, for a fixed time, while the server's resident memory, open descriptors and
in-flight gauge are sampled. A benchmark, not a test: it prints what it saw.

  .venv/bin/python python/bench/soak.py --url http://127.0.0.1:8080 --pid PID \\
      --dataset ../shared/datasets/scifact --minutes 30 --concurrency 16 \\
      --key admin=KEY --key acme=KEY --key globex=KEY

`make soak` starts a server with three such keys and runs this against it. Expected answers:
2xx, and 503 with Retry-After (the documented overload answer). A delete of a document another
worker deleted first is a 404 and counted apart. Anything else is an error.

Prints one JSON object: requests and statuses per operation, latency percentiles, and the
samples (seconds, RSS MiB, open descriptors) with their spread after the warm-up.
"""
import argparse
import json
import random
import re
import threading
import time

import httpx

OPERATIONS = [("query", 30), ("search", 35), ("stream", 15), ("ingest", 15), ("delete", 5)]
# `--reads-only`: the same traffic without writes, to tell memory the data grows by from a leak.
READS = [("query", 30), ("search", 35), ("stream", 15)]


def load_jsonl(path, limit=None):
    out = []
    with open(path) as f:
        for line in f:
            if line.strip():
                out.append(json.loads(line))
                if limit and len(out) >= limit:
                    break
    return out


class Soak:
    def __init__(self, args):
        self.args = args
        self.base = args.url.rstrip("/")
        self.coll = f"{self.base}/v1/collections/{args.collection}"
        self.keys = dict(k.split("=", 1) for k in args.key)
        self.queries = [q["text"] for q in load_jsonl(f"{args.dataset}/queries.jsonl")]
        self.corpus = load_jsonl(f"{args.dataset}/corpus.jsonl", limit=args.pool)
        self.lock = threading.Lock()
        self.stats = {op: {"statuses": {}, "latencies": []} for op, _ in OPERATIONS}
        self.owned = {name: set() for name in self.keys}
        self.stop = threading.Event()
        self.samples = []

    def record(self, op, status, seconds):
        with self.lock:
            s = self.stats[op]
            s["statuses"][str(status)] = s["statuses"].get(str(status), 0) + 1
            s["latencies"].append(seconds)

    def worker(self, seed):
        rng = random.Random(seed)
        names = list(self.keys)
        ops = [op for op, w in (READS if self.args.reads_only else OPERATIONS) for _ in range(w)]
        with httpx.Client(timeout=120) as http:
            while not self.stop.is_set():
                name = rng.choice(names)
                headers = {"Authorization": f"Bearer {self.keys[name]}"}
                op = rng.choice(ops)
                start = time.perf_counter()
                try:
                    status = getattr(self, op)(http, headers, name, rng)
                except httpx.HTTPError as e:
                    status = f"transport:{type(e).__name__}"
                self.record(op, status, time.perf_counter() - start)

    def query(self, http, headers, name, rng):
        r = http.post(f"{self.coll}/query", headers=headers, json={"question": rng.choice(self.queries), "k": 5})
        return r.status_code

    def search(self, http, headers, name, rng):
        body = {"question": rng.choice(self.queries), "k": 10, "mode": rng.choice(["hybrid", "dense", "bm25"])}
        return http.post(f"{self.coll}/search", headers=headers, json=body).status_code

    def stream(self, http, headers, name, rng):
        body = {"question": rng.choice(self.queries), "k": 5, "stream": True}
        with http.stream("POST", f"{self.coll}/query", headers=headers, json=body) as r:
            if r.status_code != 200:
                r.read()
                return r.status_code
            # Half of the streams are read to the end; the other half vanish mid-stream.
            for i, _ in enumerate(r.iter_lines()):
                if rng.random() < 0.5 and i >= 1:
                    return "200-abandoned"
            return r.status_code

    def ingest(self, http, headers, name, rng):
        docs = rng.sample(self.corpus, rng.randint(1, 4))
        body = {"documents": [{"id": f"soak-{d['_id']}", "title": d.get("title") or None, "text": d["text"]} for d in docs]}
        r = http.post(f"{self.coll}/documents", headers=headers, json=body)
        if r.status_code == 200:
            with self.lock:
                self.owned[name].update(d["id"] for d in body["documents"])
        return r.status_code

    def delete(self, http, headers, name, rng):
        with self.lock:
            if not self.owned[name]:
                return "skipped"
            doc = rng.choice(sorted(self.owned[name]))
            self.owned[name].discard(doc)
        r = http.delete(f"{self.coll}/documents/{doc}", headers=headers)
        return "404-raced" if r.status_code == 404 else r.status_code

    def sample(self):
        start = time.time()
        while not self.stop.wait(self.args.sample_seconds):
            self.samples.append(self.read_process(time.time() - start))

    def read_process(self, t):
        pid = self.args.pid
        with open(f"/proc/{pid}/status") as f:
            rss = int(re.search(r"VmRSS:\s+(\d+)", f.read()).group(1)) / 1024
        import os

        fds = len(os.listdir(f"/proc/{pid}/fd"))
        return {"t": round(t), "rss_mib": round(rss, 1), "fds": fds}

    def in_flight(self):
        m = httpx.get(f"{self.base}/metrics", timeout=10).text
        line = next(l for l in m.splitlines() if l.startswith("rag_http_requests_in_flight "))
        return int(float(line.split()[1]))

    def run(self):
        threads = [threading.Thread(target=self.worker, args=(i,), daemon=True) for i in range(self.args.concurrency)]
        sampler = threading.Thread(target=self.sample, daemon=True)
        started = time.time()
        sampler.start()
        for t in threads:
            t.start()
        time.sleep(self.args.minutes * 60)
        self.stop.set()
        for t in threads:
            t.join()
        elapsed = time.time() - started
        time.sleep(2)
        final = self.read_process(elapsed)
        gauge = self.in_flight()
        return self.report(elapsed, final, gauge)

    def report(self, elapsed, final, gauge):
        warm = [s for s in self.samples if s["t"] >= self.args.warmup_minutes * 60] or self.samples
        def spread(key):
            vals = [s[key] for s in warm]
            return {"min": min(vals), "max": max(vals), "first": vals[0], "last": vals[-1]} if vals else None
        ops = {}
        errors = 0
        for op, s in self.stats.items():
            lat = sorted(s["latencies"])
            pct = lambda p: round(1000 * lat[min(len(lat) - 1, int(p * len(lat)))], 1) if lat else None
            ops[op] = {"requests": len(lat), "statuses": s["statuses"], "p50_ms": pct(0.5), "p99_ms": pct(0.99)}
            for status, n in s["statuses"].items():
                if not (status.startswith("2") or status in ("503", "404-raced", "skipped")):
                    errors += n
        return {
            "minutes": round(elapsed / 60, 1),
            "concurrency": self.args.concurrency,
            "reads_only": self.args.reads_only,
            "keys": sorted(self.keys),
            "requests": sum(o["requests"] for o in ops.values()),
            "errors": errors,
            "operations": ops,
            "after_warmup": {"rss_mib": spread("rss_mib"), "fds": spread("fds")},
            "final": final,
            "in_flight_gauge_at_rest": gauge - 1,  # the scrape that read it is in flight itself
            "samples": self.samples,
        }


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--url", required=True)
    p.add_argument("--pid", type=int, required=True, help="the server's process id, for RSS and descriptors")
    p.add_argument("--dataset", required=True)
    p.add_argument("--collection", default="rag")
    p.add_argument("--key", action="append", required=True, help="NAME=KEY (repeat)")
    p.add_argument("--minutes", type=float, default=30)
    p.add_argument("--warmup-minutes", type=float, default=5)
    p.add_argument("--concurrency", type=int, default=16)
    p.add_argument("--pool", type=int, default=500, help="SciFact documents the ingests draw from")
    p.add_argument("--sample-seconds", type=float, default=15)
    p.add_argument("--reads-only", action="store_true", help="query, search and stream only (no ingest or delete)")
    args = p.parse_args()
    print(json.dumps(Soak(args).run(), indent=1))


if __name__ == "__main__":
    main()
