# Python side of PineconeStore: thin functions over the pinecone 10.x client, called from Rust.
from pinecone import Pinecone, ServerlessSpec

METRICS = {"cosine": "cosine", "l2": "euclidean", "ip": "dotproduct"}
DISTANCES = {v: k for k, v in METRICS.items()}


class IndexMissing(LookupError):
    """The named index does not exist and creating it was not allowed."""


def connect(api_key, index_name, index_host, control_host, create, dimension, distance, cloud, region):
    kwargs = {"api_key": api_key}
    if control_host:
        kwargs["host"] = control_host
    pc = Pinecone(**kwargs)
    info = None
    if index_host:
        index = pc.Index(host=index_host)
    else:
        if not pc.has_index(index_name):
            if not create:
                raise IndexMissing(f"Pinecone index `{index_name}` does not exist")
            if dimension is None:
                raise ValueError("creating a Pinecone index needs its dimension")
            pc.create_index(name=index_name, dimension=dimension, metric=METRICS[distance],
                            spec=ServerlessSpec(cloud=cloud, region=region))
        model = pc.describe_index(index_name)
        field = next(iter(model.schema.fields.values()), None) if getattr(model, "schema", None) else None
        if field is not None:
            info = (int(field.dimension), DISTANCES.get(field.metric, field.metric))
        index = pc.Index(host=model.host)
    return pc, index, info


def upsert(index, namespace, batches):
    for batch in batches:
        index.upsert(vectors=batch, namespace=namespace, show_progress=False)


def query(index, namespace, vector, k, flt):
    res = index.query(vector=vector.tolist(), top_k=k, filter=flt, include_metadata=True, namespace=namespace)
    return [(m.id, float(m.score), dict(m.metadata or {})) for m in res.matches]


def delete_ids(index, namespace, ids):
    for start in range(0, len(ids), 1000):
        index.delete(ids=ids[start:start + 1000], namespace=namespace)


def delete_filter(index, namespace, flt):
    index.delete(filter=flt, namespace=namespace)


def stats(index, namespace):
    s = index.describe_index_stats()
    ns = s.namespaces.get(namespace)
    return {
        "namespace_count": ns.vector_count if ns else 0,
        "total_vector_count": s.total_vector_count,
        "dimension": s.dimension or 0,
        "metric": s.metric or "",
        "index_fullness": s.index_fullness,
        "namespaces": len(s.namespaces),
    }
