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


class ShardUnavailable(RuntimeError):
    """A shard of the collection has no copy on a node that answers (a node of the cluster is lost)."""


# Send failures to a peer newer than this mark it as unreachable when the error does not name it.
RECENT_FAILURE_SECS = 60


def unreachable_shards(client, name, error_text):
    """The shards of `name` with no copy on a reachable peer, as (shard id, [(peer id, uri)]),
    or None when the cluster cannot say (not a cluster, or the collection or status unknown)."""
    import datetime

    try:
        status = client.http.distributed_api.cluster_status().result
        info = client.http.distributed_api.collection_cluster_info(name).result
    except Exception:  # noqa: BLE001 - a diagnosis only: the original error is raised anyway
        return None
    peers = {str(pid): p.uri for pid, p in (getattr(status, "peers", None) or {}).items()}
    if len(peers) < 2:
        return None
    failures = getattr(status, "message_send_failures", None) or {}
    now = datetime.datetime.now(datetime.timezone.utc)
    down = set()
    for pid, uri in peers.items():
        if uri.rstrip("/") in error_text:
            down.add(pid)
            continue
        f = failures.get(uri)
        stamp = getattr(f, "latest_error_timestamp", None) if f else None
        if stamp is not None and (now - stamp).total_seconds() < RECENT_FAILURE_SECS:
            down.add(pid)
    if not down:
        return None
    copies = {}
    for s in info.local_shards or []:
        copies.setdefault(s.shard_id, []).append(str(info.peer_id))
    for s in info.remote_shards or []:
        copies.setdefault(s.shard_id, []).append(str(s.peer_id))
    lost = []
    for shard, holders in sorted(copies.items()):
        if all(h in down for h in holders):
            lost.append((shard, [(h, peers.get(h, "?")) for h in holders]))
    return lost or None


def _explained(client, name, e):
    """`e`, or a ShardUnavailable naming the shards a lost node took with it."""
    if not isinstance(name, str) or not _transient(e):
        return e
    lost = unreachable_shards(client, name, str(e))
    if not lost:
        return e
    factor = None
    try:
        factor = client.get_collection(name).config.params.replication_factor
    except Exception:  # noqa: BLE001 - the count is a detail of the message
        pass
    shards = "; ".join(
        f"shard {shard} (its {'only copy is' if len(holders) == 1 else 'copies are'} on "
        + ", ".join(f"peer {pid} at {uri}" for pid, uri in holders) + ")"
        for shard, holders in lost
    )
    copies = f"{factor} cop{'y' if factor == 1 else 'ies'} of each shard" if factor else "its shards' copies"
    return ShardUnavailable(
        f"collection `{name}`: {shards} does not answer, and the collection keeps {copies}. Bring the node back, or "
        f"keep store.qdrant.replication >= 2 (set before the collection is created) so that a collection survives "
        f"the loss of a node. Qdrant said: {str(e).strip()[:300]}"
    )


def _retry(fn, *args, **kwargs):
    delay = 0.2
    for attempt in range(RETRIES + 1):
        try:
            return fn(*args, **kwargs)
        except Exception as e:  # noqa: BLE001 - re-raised unless transient
            if attempt == RETRIES or not _transient(e):
                client = getattr(fn, "__self__", None)
                explained = _explained(client, args[0] if args else None, e) if client is not None else e
                if explained is e:
                    raise
                raise explained from e
            time.sleep(delay)
            delay *= 2


def warn_single_copy(client, name, replication):
    """A warning (or None) when `name` is created with one copy of each shard on a cluster of
    several nodes: losing any node then loses part of the collection."""
    if replication and replication >= 2:
        return None
    try:
        peers = getattr(client.http.distributed_api.cluster_status().result, "peers", None) or {}
    except Exception:  # noqa: BLE001 - not a cluster, or no status: nothing to warn about
        return None
    if len(peers) < 2:
        return None
    return (f"collection `{name}` is created with one copy of each shard on a cluster of {len(peers)} nodes: losing "
            f"any node makes every query fail until it is back; set store.qdrant.replication >= 2 to survive it")


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


def create(client, name, dimension, distance, sparse=False, shards=None, replication=None, server=False, layout=None):
    kw = {}
    on_disk = None
    if sparse:
        kw["sparse_vectors_config"] = {SPARSE: models.SparseVectorParams(modifier=models.Modifier.IDF)}
    if shards:
        kw["shard_number"] = shards
    if replication:
        kw["replication_factor"] = replication
    if layout:
        on_disk = layout["on_disk"] or None
        kw["hnsw_config"] = models.HnswConfigDiff(m=layout["m"], ef_construct=layout["ef_construct"],
                                                  on_disk=layout["hnsw_on_disk"])
        if layout["quantization"] == "int8":
            kw["quantization_config"] = models.ScalarQuantization(scalar=models.ScalarQuantizationConfig(
                type=models.ScalarType.INT8, always_ram=layout["always_ram"]))
        elif layout["quantization"] == "binary":
            kw["quantization_config"] = models.BinaryQuantization(binary=models.BinaryQuantizationConfig(
                always_ram=layout["always_ram"]))
        if layout["indexing_threshold_kb"] is not None:
            kw["optimizers_config"] = models.OptimizersConfigDiff(indexing_threshold=layout["indexing_threshold_kb"])
    try:
        _retry(client.create_collection, name,
               vectors_config=models.VectorParams(size=dimension, distance=DISTANCES[distance], on_disk=on_disk), **kw)
    except Exception:
        # Another worker created it first: that is the collection we want.
        if not client.collection_exists(name):
            raise
    if sparse and server:
        for field in INDEXED:
            _retry(client.create_payload_index, name, field, models.PayloadSchemaType.KEYWORD, wait=True)
    for field in (layout or {}).get("tenant_keys", []):
        # Qdrant's multitenancy index: a tenant's points are stored together.
        _retry(client.create_payload_index, name, field,
               models.KeywordIndexParams(type=models.KeywordIndexType.KEYWORD, is_tenant=True), wait=True)


def _search_params(params):
    if not params:
        return None
    return models.SearchParams.model_validate(params)


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


def query(client, name, vector, k, spec, params=None):
    res = _retry(client.query_points, name, query=vector.tolist(), limit=k, query_filter=to_filter(spec), with_payload=True,
                 search_params=_search_params(params))
    return _rows(res.points)


def sparse_query(client, name, indices, values, k, spec):
    res = _retry(client.query_points, name, query=models.SparseVector(indices=indices, values=values), using=SPARSE,
                 limit=k, query_filter=to_filter(spec), with_payload=True)
    return _rows(res.points)


def hybrid_query(client, name, vector, indices, values, k, candidates, spec, fusion, rrf_k, params=None):
    flt = to_filter(spec)
    prefetch = [models.Prefetch(query=vector.tolist(), limit=candidates, filter=flt, params=_search_params(params))]
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
