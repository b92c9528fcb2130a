"""A local HTTP server that speaks the Pinecone API surface rag uses, for tests.

No Pinecone emulator exists, so this implements, in memory:
  data plane:    POST /vectors/upsert, POST /query, POST /vectors/delete, POST /describe_index_stats
  control plane: GET /indexes, GET /indexes/{name}, POST /indexes  (one server plays both roles;
                 an index's `host` is this server's own URL)
Filters support $eq $ne $in $nin $gt $gte $lt $lte $and $or, with Pinecone's semantics
(list-valued metadata matches $eq/$in when any element matches). Metrics: cosine, dotproduct,
euclidean (returned as squared distance, lower is closer, as Pinecone does).
Limits enforced as Pinecone documents them: 1000 vectors and 2 MB per upsert request, 40 KB of
metadata per vector. Prints "PORT <n>" first; exits after --max-seconds.
"""
import argparse
import json
import math
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

INDEXES = {}  # name -> {"dimension", "metric", "namespaces": {ns: {id: (values, metadata)}}}
LOCK = threading.Lock()
STATS = {"upsert_requests": 0, "max_vectors_per_request": 0, "max_bytes_per_request": 0}
DEFAULT_INDEX = "default"


def matches(meta, flt):
    if not flt:
        return True
    for key, cond in flt.items():
        if key == "$and":
            if not all(matches(meta, c) for c in cond):
                return False
        elif key == "$or":
            if not any(matches(meta, c) for c in cond):
                return False
        else:
            if not isinstance(cond, dict):
                cond = {"$eq": cond}
            for op, val in cond.items():
                if not check(meta.get(key), op, val):
                    return False
    return True


def eq(a, b):
    if isinstance(a, list):
        return b in a
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b or a == b and type(a) == type(b)
    return a == b


def check(v, op, val):
    if op == "$eq":
        return v is not None and eq(v, val)
    if op == "$ne":
        return v is None or not eq(v, val)
    if op == "$in":
        return v is not None and any(eq(v, x) for x in val)
    if op == "$nin":
        return v is None or not any(eq(v, x) for x in val)
    if not isinstance(v, (int, float)) or isinstance(v, bool):
        return False
    return {"$gt": v > val, "$gte": v >= val, "$lt": v < val, "$lte": v <= val}[op]


def score(metric, a, b):
    dot = sum(x * y for x, y in zip(a, b))
    if metric == "dotproduct":
        return dot
    if metric == "euclidean":
        return sum((x - y) ** 2 for x, y in zip(a, b))
    na = math.sqrt(sum(x * x for x in a)) or 1.0
    nb = math.sqrt(sum(x * x for x in b)) or 1.0
    return dot / (na * nb)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def send_json(self, status, obj):
        body = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def index_model(self, name):
        idx = INDEXES[name]
        host = f"http://127.0.0.1:{self.server.server_address[1]}"
        return {
            "name": name,
            "status": {"ready": True, "state": "Ready"},
            "schema": {"fields": {"values": {"type": "dense_vector", "dimension": idx["dimension"], "metric": idx["metric"]}}},
            "deployment": {"deployment_type": "managed", "cloud": idx.get("cloud", "aws"), "region": idx.get("region", "us-east-1")},
            "deletion_protection": "disabled",
            "host": host,
            "dimension": idx["dimension"],
            "metric": idx["metric"],
            "spec": {"serverless": {"cloud": idx.get("cloud", "aws"), "region": idx.get("region", "us-east-1")}},
            "vector_type": "dense",
        }

    def do_GET(self):
        if self.headers.get("Api-Key") == "bad-key":
            return self.send_json(401, {"error": {"code": "UNAUTHENTICATED", "message": "Invalid API Key"}, "status": 401})
        path = self.path.split("?")[0]
        with LOCK:
            if path == "/indexes":
                return self.send_json(200, {"indexes": [self.index_model(n) for n in INDEXES]})
            if path.startswith("/indexes/"):
                name = path[len("/indexes/"):]
                if name not in INDEXES:
                    return self.send_json(404, {"error": {"code": "NOT_FOUND", "message": f"Resource {name} not found"}, "status": 404})
                return self.send_json(200, self.index_model(name))
            if path == "/stats":
                return self.send_json(200, STATS)
        self.send_json(404, {"error": {"code": "NOT_FOUND", "message": path}, "status": 404})

    def do_POST(self):
        length = int(self.headers.get("Content-Length", 0))
        raw = self.rfile.read(length) or b"{}"
        req = json.loads(raw)
        if self.headers.get("Api-Key") == "bad-key":
            return self.send_json(401, {"error": {"code": "UNAUTHENTICATED", "message": "Invalid API Key"}, "status": 401})
        path = self.path.split("?")[0]
        with LOCK:
            if path == "/indexes":
                name = req["name"]
                if name in INDEXES:
                    return self.send_json(409, {"error": {"code": "ALREADY_EXISTS", "message": "exists"}, "status": 409})
                field = next(iter(req.get("schema", {}).get("fields", {}).values()), {})
                dep = req.get("deployment") or {}
                INDEXES[name] = {"dimension": req.get("dimension") or field.get("dimension"), "metric": req.get("metric") or field.get("metric", "cosine"),
                                 "cloud": dep.get("cloud"), "region": dep.get("region"), "namespaces": {}}
                return self.send_json(201, self.index_model(name))
            idx = INDEXES.setdefault(DEFAULT_INDEX, {"dimension": None, "metric": self.server.metric, "namespaces": {}})
            if len(INDEXES) > 1:
                idx = next(v for k, v in INDEXES.items() if k != DEFAULT_INDEX or len(INDEXES) == 1)
            ns = idx["namespaces"].setdefault(req.get("namespace", ""), {})
            if path == "/vectors/upsert":
                vectors = req["vectors"]
                STATS["upsert_requests"] += 1
                STATS["max_vectors_per_request"] = max(STATS["max_vectors_per_request"], len(vectors))
                STATS["max_bytes_per_request"] = max(STATS["max_bytes_per_request"], len(raw))
                if len(vectors) > 1000:
                    return self.send_json(400, {"error": {"code": "INVALID_ARGUMENT", "message": "max 1000 vectors per upsert"}, "status": 400})
                if len(raw) > 2 * 1024 * 1024:
                    return self.send_json(400, {"error": {"code": "INVALID_ARGUMENT", "message": "request exceeds 2MB"}, "status": 400})
                for v in vectors:
                    if idx["dimension"] is None:
                        idx["dimension"] = len(v["values"])
                    if len(v["values"]) != idx["dimension"]:
                        return self.send_json(400, {"error": {"code": "INVALID_ARGUMENT", "message": f"Vector dimension {len(v['values'])} does not match the dimension of the index {idx['dimension']}"}, "status": 400})
                    if len(json.dumps(v.get("metadata", {}))) > 40960:
                        return self.send_json(400, {"error": {"code": "INVALID_ARGUMENT", "message": "Metadata size exceeds the limit of 40960 bytes per vector"}, "status": 400})
                for v in vectors:
                    ns[v["id"]] = (v["values"], v.get("metadata") or {})
                return self.send_json(200, {"upsertedCount": len(vectors)})
            if path == "/query":
                vec = req["vector"]
                if idx["dimension"] is not None and len(vec) != idx["dimension"]:
                    return self.send_json(400, {"error": {"code": "INVALID_ARGUMENT", "message": f"Vector dimension {len(vec)} does not match the dimension of the index {idx['dimension']}"}, "status": 400})
                hits = [(score(idx["metric"], vec, vals), i, meta) for i, (vals, meta) in ns.items() if matches(meta, req.get("filter"))]
                hits.sort(key=lambda h: h[0], reverse=idx["metric"] != "euclidean")
                out = [{"id": i, "score": s, "values": [], **({"metadata": m} if req.get("includeMetadata") else {})} for s, i, m in hits[: req["topK"]]]
                return self.send_json(200, {"matches": out, "namespace": req.get("namespace", ""), "usage": {"readUnits": 1}})
            if path == "/vectors/delete":
                if req.get("deleteAll"):
                    ns.clear()
                for i in req.get("ids") or []:
                    ns.pop(i, None)
                if req.get("filter"):
                    for i in [i for i, (_, m) in ns.items() if matches(m, req["filter"])]:
                        del ns[i]
                return self.send_json(200, {})
            if path == "/describe_index_stats":
                namespaces = {k: {"vectorCount": len(v)} for k, v in idx["namespaces"].items() if v}
                return self.send_json(200, {"namespaces": namespaces, "dimension": idx["dimension"] or 0, "indexFullness": 0.0,
                                            "totalVectorCount": sum(len(v) for v in idx["namespaces"].values()), "metric": idx["metric"], "vectorType": "dense"})
        self.send_json(404, {"error": {"code": "NOT_FOUND", "message": path}, "status": 404})


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--metric", default="cosine")
    ap.add_argument("--max-seconds", type=float, default=600)
    args = ap.parse_args()
    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    server.metric = args.metric
    print(f"PORT {server.server_address[1]}", flush=True)
    threading.Timer(args.max_seconds, server.shutdown).start()
    server.serve_forever()


if __name__ == "__main__":
    main()
