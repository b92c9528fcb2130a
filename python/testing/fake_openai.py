"""A small OpenAI-compatible HTTP server for tests: /v1/embeddings and /v1/chat/completions.

Run: python fake_openai.py  -> prints "PORT <n>" on its first line, then serves on 127.0.0.1:<n>.

* Embeddings are deterministic: a unit vector derived from SHA-256 of the text (dimension 8, or
  the request's `dimensions`).
* Chat completions answer in DSPy's ChatAdapter format, with every output field the system
  message asks for; `stream: true` sends server-sent events, a few characters per chunk.
* Fault injection: POST /control {"fail": [429, 500, ...]} makes the next requests fail with those
  statuses, in order; {"delay_ms": N} makes every chat completion wait N ms first (requests in
  flight for the server's overload and shutdown tests); {"truncate_chars": N} cuts every chat reply
  after N characters with `finish_reason: "length"` (an LM stopped by max_tokens), 0 stops. GET /stats returns request counts. Stops after --max-seconds (a test
  server never outlives its test).
"""
import argparse
import hashlib
import json
import math
import re
import struct
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

STATE = {"fail": [], "requests": {"embeddings": 0, "chat": 0, "failed": 0}, "inputs": [], "answers": {}, "delay_ms": 0, "truncate_chars": 0}
LOCK = threading.Lock()


def vector(text, dim):
    out = []
    seed = text.encode()
    while len(out) < dim:
        seed = hashlib.sha256(seed).digest()
        out.extend(x / 2**32 - 0.5 for x in struct.unpack("<8I", seed))
    v = out[:dim]
    n = math.sqrt(sum(x * x for x in v)) or 1.0
    return [x / n for x in v]


def output_fields(messages):
    system = " ".join(m.get("content", "") for m in messages if m.get("role") == "system" and isinstance(m.get("content"), str))
    # DSPy lists outputs as "[[ ## name ## ]]" in its instructions; inputs come first.
    fields = re.findall(r"\[\[ ## (\w+) ## \]\]", system)
    outputs = []
    marker = system.find("Respond with the corresponding output fields")
    tail = system[marker:] if marker >= 0 else system
    for f in re.findall(r"\[\[ ## (\w+) ## \]\]", tail):
        if f != "completed" and f not in outputs:
            outputs.append(f)
    return outputs or [f for f in fields if f not in ("completed",)][-2:] or ["answer"]


def chat_content(messages):
    user = " ".join(m.get("content", "") for m in messages if m.get("role") == "user" and isinstance(m.get("content"), str))
    question = re.search(r"\[\[ ## question ## \]\]\s*(.*?)(\n\n|\Z)", user, re.S)
    q = question.group(1).strip() if question else user[-80:]
    with LOCK:
        answer = STATE["answers"].get(q, f"The fake LM answers: {q}")
    parts = []
    for f in output_fields(messages):
        if f == "reasoning":
            parts.append(f"[[ ## reasoning ## ]]\nReasoning about: {q}")
        elif f == "answer":
            parts.append(f"[[ ## answer ## ]]\n{answer} [1]")
        elif f == "search_query" or f == "query":
            parts.append(f"[[ ## {f} ## ]]\nsearch: {q}")
        else:
            parts.append(f"[[ ## {f} ## ]]\n{f} for {q}")
    parts.append("[[ ## completed ## ]]")
    return "\n\n".join(parts)


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

    def do_GET(self):
        if self.path.endswith("/stats"):
            with LOCK:
                return self.send_json(200, {"requests": STATE["requests"], "inputs": STATE["inputs"]})
        self.send_json(404, {"error": {"message": "not found"}})

    def do_POST(self):
        length = int(self.headers.get("Content-Length", 0))
        req = json.loads(self.rfile.read(length) or b"{}")
        if self.path.endswith("/control"):
            with LOCK:
                STATE["fail"].extend(req.get("fail", []))
                STATE["answers"].update(req.get("answers", {}))
                if "delay_ms" in req:
                    STATE["delay_ms"] = int(req["delay_ms"])
                if "truncate_chars" in req:
                    STATE["truncate_chars"] = int(req["truncate_chars"])
            return self.send_json(200, {"ok": True})
        if self.headers.get("Authorization", "") == "Bearer bad-key":
            return self.send_json(401, {"error": {"message": "Incorrect API key provided", "type": "invalid_request_error", "code": "invalid_api_key"}})
        with LOCK:
            fail = STATE["fail"].pop(0) if STATE["fail"] else None
            if fail:
                STATE["requests"]["failed"] += 1
        if fail:
            return self.send_json(fail, {"error": {"message": f"injected failure {fail}", "type": "server_error" if fail >= 500 else "rate_limit"}})
        if self.path.endswith("/embeddings"):
            inputs = req["input"] if isinstance(req["input"], list) else [req["input"]]
            dim = int(req.get("dimensions") or 8)
            with LOCK:
                STATE["requests"]["embeddings"] += 1
                STATE["inputs"].append(len(inputs))
            data = [{"object": "embedding", "index": i, "embedding": vector(t, dim)} for i, t in enumerate(inputs)]
            return self.send_json(200, {"object": "list", "data": data, "model": req.get("model"), "usage": {"prompt_tokens": 1, "total_tokens": 1}})
        if self.path.endswith("/chat/completions"):
            with LOCK:
                STATE["requests"]["chat"] += 1
                delay, truncate = STATE["delay_ms"], STATE["truncate_chars"]
            if delay:
                time.sleep(delay / 1000)
            content = chat_content(req.get("messages", []))
            finish = "stop"
            if truncate and len(content) > truncate:
                content, finish = content[:truncate], "length"
            created = int(time.time())
            if req.get("stream"):
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Cache-Control", "no-cache")
                self.send_header("Connection", "close")
                self.end_headers()
                for i in range(0, len(content), 4):
                    chunk = {"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": created, "model": req.get("model"),
                             "choices": [{"index": 0, "delta": {"role": "assistant", "content": content[i:i + 4]}, "finish_reason": None}]}
                    self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
                    self.wfile.flush()
                end = {"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": created, "model": req.get("model"),
                       "choices": [{"index": 0, "delta": {}, "finish_reason": finish}]}
                self.wfile.write(f"data: {json.dumps(end)}\n\ndata: [DONE]\n\n".encode())
                self.wfile.flush()
                self.close_connection = True
                return
            return self.send_json(200, {
                "id": "chatcmpl-fake", "object": "chat.completion", "created": created, "model": req.get("model"),
                "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": finish}],
                "usage": {"prompt_tokens": 10, "completion_tokens": 10, "total_tokens": 20},
            })
        self.send_json(404, {"error": {"message": f"no route {self.path}"}})


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--max-seconds", type=float, default=600)
    args = ap.parse_args()
    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    print(f"PORT {server.server_address[1]}", flush=True)
    threading.Timer(args.max_seconds, server.shutdown).start()
    server.serve_forever()


if __name__ == "__main__":
    main()
