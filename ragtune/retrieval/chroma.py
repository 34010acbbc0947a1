"""ChromaDB as the vector database: write a corpus's embeddings once, query it with (adapted) query embeddings.

Chroma runs embedded and persistent (`chromadb.PersistentClient` on a folder, no server). Collections
are created with no embedding function, so Chroma never embeds text nor downloads a model: every vector
comes from a ragtune encoder. A query-only adapter (ragtune/models/adapter.py) maps query embeddings
only, so a collection embedded once with the base model serves the fine-tuned query side unchanged.

Scores: the default space is 'ip', whose distance is 1 - q.d, so a run's score is 1 - distance = q.d,
the same dot product `dense_search` ranks by (cosine for normalised embeddings); in the 'cosine' space
the score is 1 - distance = cos(q, d). Either way higher is better and the runs compare score for score.

HNSW is approximate: `ef_search` (candidates kept per query) must be well above top_k for the top-k to
match exact search; the defaults are set high for corpora of a few thousand documents, raise them
for larger ones. chromadb 1.5 behaviours this module works around:
- `add` of an id already in the collection is silently ignored, so a collection is always recreated,
  never appended to; `collection_mismatch` says whether an existing one can be reused.
- `collection.modify(configuration={"hnsw": {"ef_search": ...}})` is stored but the loaded index keeps
  the old value until a new client reloads it, so the HNSW settings are fixed at creation.
- Two clients on one folder in one process must have equal Settings, hence the one `SETTINGS` here.
- Names must be 3-512 characters of [a-zA-Z0-9._-], starting and ending alphanumeric.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ragtune.eval.metrics import Run

SPACES = ("ip", "cosine")  # both give score = 1 - distance
NAME_PATTERN = re.compile(r"^[a-zA-Z0-9](?:[a-zA-Z0-9._-]{1,510})[a-zA-Z0-9]$")
# Collection metadata written with the vectors, so a later run can tell whether they are the same.
FINGERPRINT_KEY, DIM_KEY = "ragtune_fingerprint", "ragtune_dim"


@dataclass(frozen=True)
class HnswSettings:
    """Chroma's HNSW index settings (its `configuration={"hnsw": ...}`), fixed when a collection is created."""

    space: str = "ip"
    ef_search: int = 1000  # candidate list per query; far above top_k so the top-k is that of exact search
    ef_construction: int = 400  # candidate list while inserting: a better graph, a slower write
    max_neighbors: int = 32  # HNSW's M: edges per node

    def __post_init__(self):
        if self.space not in SPACES:
            raise ValueError(f"space={self.space!r} is not one of {SPACES} (scores are 1 - distance in both)")
        for key in ("ef_search", "ef_construction", "max_neighbors"):
            if getattr(self, key) < 1:
                raise ValueError(f"{key} must be >= 1, got {getattr(self, key)}")


def settings():
    """The one Settings every client here uses: no telemetry (nothing leaves the machine)."""
    import chromadb

    return chromadb.Settings(anonymized_telemetry=False)


def open_client(db_dir: str | Path):
    """An embedded, persistent Chroma client on `db_dir` (created if missing)."""
    import chromadb

    Path(db_dir).mkdir(parents=True, exist_ok=True)
    return chromadb.PersistentClient(path=str(db_dir), settings=settings())


def check_name(name: str) -> str:
    if not NAME_PATTERN.match(name):
        raise ValueError(f"collection name {name!r}: Chroma wants 3-512 characters of [a-zA-Z0-9._-], "
                         "starting and ending with a letter or digit")
    return name


def embeddings_fingerprint(doc_ids: list[str], doc_emb: np.ndarray) -> str:
    """sha256 over the ids (in order) and the float32 vectors: equal only for the same corpus and model."""
    h = hashlib.sha256()
    for doc_id in doc_ids:
        h.update(doc_id.encode("utf-8"))
        h.update(b"\x00")  # separator: ["ab"] and ["a", "b"] must differ
    h.update(np.ascontiguousarray(doc_emb, dtype=np.float32).tobytes())
    return h.hexdigest()


def _check_inputs(ids: list[str], emb: np.ndarray, what: str) -> np.ndarray:
    emb = np.asarray(emb, dtype=np.float32)
    if emb.ndim != 2 or emb.shape[0] != len(ids):
        raise ValueError(f"{what}: expected ({len(ids)}, dim) embeddings for {len(ids)} ids, got {emb.shape}")
    if not np.isfinite(emb).all():
        raise ValueError(f"{what}: embeddings hold NaN or inf")
    return emb


def write_collection(db_dir: str | Path, name: str, doc_ids: list[str], doc_emb: np.ndarray,
                     hnsw: HnswSettings = HnswSettings(), batch_size: int = 0):
    """Create (replacing any of that name) collection `name` in `db_dir` holding `doc_emb` under `doc_ids`.

    Added in batches of `batch_size` (0 or above Chroma's maximum: Chroma's maximum). Returns the collection."""
    emb = _check_inputs(doc_ids, doc_emb, f"collection '{name}'")
    if len(set(doc_ids)) != len(doc_ids):
        raise ValueError(f"collection '{name}': doc ids are not unique (Chroma would keep the first of each)")
    client = open_client(db_dir)
    check_name(name)
    if name in {c.name for c in client.list_collections()}:
        client.delete_collection(name)
    metadata = {FINGERPRINT_KEY: embeddings_fingerprint(doc_ids, emb), DIM_KEY: int(emb.shape[1])}
    collection = client.create_collection(name, configuration={"hnsw": asdict(hnsw)}, metadata=metadata,
                                          embedding_function=None)
    step = min(batch_size or client.get_max_batch_size(), client.get_max_batch_size())
    for start in range(0, len(doc_ids), step):
        collection.add(ids=doc_ids[start:start + step], embeddings=emb[start:start + step])
    return collection


def open_collection(db_dir: str | Path, name: str):
    """The existing collection `name` in `db_dir`, with no embedding function (it is only queried by vector)."""
    client = open_client(db_dir)
    names = sorted(c.name for c in client.list_collections())
    if name not in names:
        raise FileNotFoundError(f"{db_dir}: no collection '{name}' (it holds {names or 'none'})")
    return client.get_collection(name, embedding_function=None)


def stored_hnsw(collection) -> dict[str, Any]:
    hnsw = (collection.configuration or {}).get("hnsw") or {}
    return {key: hnsw.get(key) for key in asdict(HnswSettings())}


def collection_mismatch(collection, doc_ids: list[str], doc_emb: np.ndarray,
                        hnsw: HnswSettings = HnswSettings()) -> str:
    """Why `collection` is not exactly `doc_ids` / `doc_emb` under `hnsw` ("" when it is, so it can be reused)."""
    count = collection.count()
    if count != len(doc_ids):
        return f"it holds {count} vectors, the corpus has {len(doc_ids)}"
    if stored_hnsw(collection) != asdict(hnsw):
        return f"its HNSW settings {stored_hnsw(collection)} are not the asked {asdict(hnsw)}"
    if (collection.metadata or {}).get(FINGERPRINT_KEY) != embeddings_fingerprint(doc_ids, doc_emb):
        return "its vectors' fingerprint differs (another corpus, model or encoder setting)"
    stored_ids = set(collection.get(include=[])["ids"])
    if stored_ids != set(doc_ids):
        return f"{len(stored_ids ^ set(doc_ids))} ids differ from the corpus's"
    return ""


def collection_dim(collection) -> int:
    """The width of the collection's vectors (from its metadata, else from one stored vector)."""
    dim = (collection.metadata or {}).get(DIM_KEY)
    if dim is not None:
        return int(dim)
    one = collection.get(limit=1, include=["embeddings"])["embeddings"]
    if one is None or len(one) == 0:
        raise ValueError(f"collection '{collection.name}' is empty")
    return len(one[0])


def query_collection(collection, query_ids: list[str], q_emb: np.ndarray, top_k: int,
                     batch_size: int = 1000) -> Run:
    """Top-`top_k` per query as a run {qid: {doc_id: 1 - distance}} (the dot product in the 'ip' space)."""
    q = _check_inputs(query_ids, q_emb, "queries")
    if top_k < 1:
        raise ValueError(f"top_k must be >= 1, got {top_k}")
    dim = collection_dim(collection)
    if q.shape[1] != dim:
        raise ValueError(f"query embeddings have dim {q.shape[1]} but collection '{collection.name}' holds "
                         f"dim {dim} vectors: encode queries with the model that embedded the collection")
    run: Run = {}
    for start in range(0, len(query_ids), batch_size):
        result = collection.query(query_embeddings=q[start:start + batch_size], n_results=top_k,
                                  include=["distances"])
        for qid, ids, distances in zip(query_ids[start:start + batch_size], result["ids"], result["distances"],
                                       strict=True):
            run[qid] = {doc_id: 1.0 - float(dist) for doc_id, dist in zip(ids, distances, strict=True)}
    return run
