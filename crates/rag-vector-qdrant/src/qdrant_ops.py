# Python side of QdrantStore: thin functions over qdrant-client 1.20, called from Rust.
# Filters arrive as Qdrant's REST JSON and become real models.Filter / FieldCondition / Range /
# MatchAny objects through pydantic validation.
from qdrant_client import QdrantClient, models

DISTANCES = {"cosine": models.Distance.COSINE, "l2": models.Distance.EUCLID, "ip": models.Distance.DOT}
NAMES = {v: k for k, v in DISTANCES.items()}


class StorageLocked(RuntimeError):
    """The local storage folder is open in another client (local mode allows one)."""


def connect(mode, path=None, url=None, api_key=None, prefer_grpc=False, timeout=None):
    if mode == "local":
        try:
            return QdrantClient(path=path)
        except RuntimeError as e:
            # qdrant-client raises a bare RuntimeError for a locked folder; give it a class.
            raise StorageLocked(f"{path}: {e}") from e
    if mode == "memory":
        return QdrantClient(":memory:")
    return QdrantClient(url=url, api_key=api_key, prefer_grpc=prefer_grpc, timeout=timeout)


def collection_info(client, name):
    """(dimension, distance name) of an existing collection, or None."""
    if not client.collection_exists(name):
        return None
    params = client.get_collection(name).config.params.vectors
    if isinstance(params, dict):  # named vectors: use the unnamed/default one if any
        params = params.get("") or next(iter(params.values()))
    return int(params.size), NAMES.get(params.distance, str(params.distance))


def create(client, name, dimension, distance):
    client.create_collection(name, vectors_config=models.VectorParams(size=dimension, distance=DISTANCES[distance]))


def to_filter(spec):
    return None if spec is None else models.Filter.model_validate(spec)


def upsert(client, name, ids, vectors, payloads, batch_size):
    for start in range(0, len(ids), batch_size):
        end = start + batch_size
        client.upsert(
            name,
            points=models.Batch(ids=ids[start:end], vectors=vectors[start:end].tolist(), payloads=payloads[start:end]),
            wait=True,
        )


def query(client, name, vector, k, spec):
    res = client.query_points(name, query=vector.tolist(), limit=k, query_filter=to_filter(spec), with_payload=True)
    # Rows as every store shim returns them: (id or None, score, payload); the id is in the payload.
    return [(None, p.score, p.payload or {}) for p in res.points]


def delete_ids(client, name, ids):
    client.delete(name, points_selector=models.PointIdsList(points=ids), wait=True)


def delete_filter(client, name, spec):
    client.delete(name, points_selector=models.FilterSelector(filter=to_filter(spec)), wait=True)


def count(client, name):
    return client.count(name, exact=True).count


def describe(client, name):
    info = client.get_collection(name)
    return {
        "status": str(info.status.value if hasattr(info.status, "value") else info.status),
        "points_count": str(info.points_count or 0),
        "indexed_vectors_count": str(info.indexed_vectors_count or 0),
        "segments_count": str(info.segments_count or 0),
    }
