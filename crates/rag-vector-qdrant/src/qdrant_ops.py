# Python side of QdrantStore: thin functions over qdrant-client 1.20, called from Rust.
# Filters arrive as Qdrant's REST JSON and become real models.Filter / FieldCondition / Range /
# MatchAny objects through pydantic validation. BM25 arrives as sparse vectors computed in Rust;
# the collection's sparse vector `bm25` has modifier IDF, so Qdrant keeps the corpus statistics.
import time

from qdrant_client import QdrantClient, models
from qdrant_client.http.exceptions import ResponseHandlingException, UnexpectedResponse

DISTANCES = {"cosine": models.Distance.COSINE, "l2": models.Distance.EUCLID, "ip": models.Distance.DOT}
NAMES = {v: k for k, v in DISTANCES.items()}
SPARSE = "bm25"
# Payload fields the ingest record is looked up by (keyword indexes on a server).
INDEXED = ("doc_id", "rag_doc_root")
RECORD_FIELDS = ["doc_id", "chunk_id", "rag_doc_hash", "rag_doc_chunks", "rag_doc_root"]
# Retries of an idempotent request when a node is unreachable or answers 5xx (a cluster node
# lost mid-request: the next try goes to live replicas). Backoff doubles from 0.2 s.
RETRIES = 5


class StorageLocked(RuntimeError):
    """The local storage folder is open in another client (local mode allows one)."""


def _transient(e):
    if isinstance(e, UnexpectedResponse):
        return e.status_code is not None and e.status_code >= 500
    if isinstance(e, ResponseHandlingException):
        return True
    try:
        import grpc

        if isinstance(e, grpc.RpcError):
            return e.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN,
                                grpc.StatusCode.DEADLINE_EXCEEDED)
    except ImportError:
        pass
    try:
        import httpx

        return isinstance(e, httpx.TransportError)
    except ImportError:
        return False


def _retry(fn, *args, **kwargs):
    delay = 0.2
    for attempt in range(RETRIES + 1):
        try:
            return fn(*args, **kwargs)
        except Exception as e:  # noqa: BLE001 - re-raised unless transient
            if attempt == RETRIES or not _transient(e):
                raise
            time.sleep(delay)
            delay *= 2


def connect(mode, path=None, url=None, api_key=None, prefer_grpc=False, grpc_port=6334, timeout=None):
    if mode == "local":
        try:
            return QdrantClient(path=path)
        except RuntimeError as e:
            # qdrant-client raises a bare RuntimeError for a locked folder; give it a class.
            raise StorageLocked(f"{path}: {e}") from e
    if mode == "memory":
        return QdrantClient(":memory:")
    return QdrantClient(url=url, api_key=api_key, prefer_grpc=prefer_grpc, grpc_port=grpc_port, timeout=timeout,
                        check_compatibility=False)


def collection_info(client, name):
    """(dimension, distance name, has the BM25 sparse vector) of an existing collection, or None."""
    if not _retry(client.collection_exists, name):
        return None
    params = _retry(client.get_collection, name).config.params
    vectors = params.vectors
    if isinstance(vectors, dict):  # named vectors: use the unnamed/default one if any
        vectors = vectors.get("") or next(iter(vectors.values()))
    sparse = SPARSE in (params.sparse_vectors or {})
    return int(vectors.size), NAMES.get(vectors.distance, str(vectors.distance)), sparse


def create(client, name, dimension, distance, sparse=False, shards=None, replication=None, server=False):
    kw = {}
    if sparse:
        kw["sparse_vectors_config"] = {SPARSE: models.SparseVectorParams(modifier=models.Modifier.IDF)}
    if shards:
        kw["shard_number"] = shards
    if replication:
        kw["replication_factor"] = replication
    try:
        _retry(client.create_collection, name,
               vectors_config=models.VectorParams(size=dimension, distance=DISTANCES[distance]), **kw)
    except Exception:
        # Another worker created it first: that is the collection we want.
        if not client.collection_exists(name):
            raise
    if sparse and server:
        for field in INDEXED:
            _retry(client.create_payload_index, name, field, models.PayloadSchemaType.KEYWORD, wait=True)


def to_filter(spec):
    return None if spec is None else models.Filter.model_validate(spec)


def upsert(client, name, ids, vectors, payloads, batch_size, sparse=None):
    for start in range(0, len(ids), batch_size):
        end = start + batch_size
        dense = vectors[start:end].tolist()
        if sparse is None:
            batch_vectors = dense
        else:
            batch_vectors = {
                "": dense,
                SPARSE: [models.SparseVector(indices=i, values=v) for i, v in sparse[start:end]],
            }
        _retry(client.upsert, name,
               points=models.Batch(ids=ids[start:end], vectors=batch_vectors, payloads=payloads[start:end]), wait=True)


def _rows(points):
    # Rows as every store shim returns them: (id or None, score, payload); the id is in the payload.
    return [(None, p.score, p.payload or {}) for p in points]


def query(client, name, vector, k, spec):
    res = _retry(client.query_points, name, query=vector.tolist(), limit=k, query_filter=to_filter(spec), with_payload=True)
    return _rows(res.points)


def sparse_query(client, name, indices, values, k, spec):
    res = _retry(client.query_points, name, query=models.SparseVector(indices=indices, values=values), using=SPARSE,
                 limit=k, query_filter=to_filter(spec), with_payload=True)
    return _rows(res.points)


def hybrid_query(client, name, vector, indices, values, k, candidates, spec, fusion, rrf_k):
    flt = to_filter(spec)
    prefetch = [models.Prefetch(query=vector.tolist(), limit=candidates, filter=flt)]
    if indices:
        prefetch.append(models.Prefetch(query=models.SparseVector(indices=indices, values=values), using=SPARSE,
                                        limit=candidates, filter=flt))
    if fusion == "rrf":
        fused = models.RrfQuery(rrf=models.Rrf(k=int(rrf_k)))
    else:
        fused = models.FusionQuery(fusion=models.Fusion.DBSF)
    res = _retry(client.query_points, name, prefetch=prefetch, query=fused, limit=k, with_payload=True)
    return _rows(res.points)


def records(client, name, key, values):
    """(doc_id, chunk_id, record payload) of every chunk whose `key` is one of `values`."""
    flt = models.Filter(must=[models.FieldCondition(key=key, match=models.MatchAny(any=values))])
    return _record_rows(_points(client, name, flt, RECORD_FIELDS))


def all_records(client, name):
    return _record_rows(_points(client, name, None, RECORD_FIELDS))


def _record_rows(points):
    return [((p.payload or {}).get("doc_id"), (p.payload or {}).get("chunk_id"), p.payload or {}) for p in points]


def _points(client, name, flt, with_payload):
    """Every point matching `flt` (all with None), page by page, without vectors."""
    offset = None
    while True:
        points, offset = _retry(client.scroll, name, scroll_filter=flt, limit=1024, offset=offset,
                                with_payload=with_payload, with_vectors=False)
        yield from points
        if offset is None:
            return


def delete_ids(client, name, ids):
    _retry(client.delete, name, points_selector=models.PointIdsList(points=ids), wait=True)


def delete_filter(client, name, spec):
    _retry(client.delete, name, points_selector=models.FilterSelector(filter=to_filter(spec)), wait=True)


def count(client, name):
    return _retry(client.count, name, exact=True).count


def describe(client, name):
    info = _retry(client.get_collection, name)
    params = info.config.params
    return {
        "status": str(info.status.value if hasattr(info.status, "value") else info.status),
        "points_count": str(info.points_count or 0),
        "indexed_vectors_count": str(info.indexed_vectors_count or 0),
        "segments_count": str(info.segments_count or 0),
        "shards": str(params.shard_number or 1),
        "replication_factor": str(params.replication_factor or 1),
        "sparse_bm25": str(SPARSE in (params.sparse_vectors or {})).lower(),
    }


def scan(client, name):
    """Every chunk with its whole payload, as query rows without scores."""
    return [(None, None, p.payload or {}) for p in _points(client, name, None, True)]
