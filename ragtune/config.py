"""Typed, frozen experiment configs and dotted command-line overrides.

A config file is Python exposing `get_config() -> ExperimentConfig`. Overrides look like
`--optim.lr=3e-5` (or `--optim.lr 3e-5`); each is type-checked against the dataclass field,
and an unknown key is an error naming the closest valid key. Components are one dataclass
each; add a field to a component (with a default) and it is overridable at once.
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib.util
import json
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal


class ConfigError(ValueError):
    """A bad config file, key or value; the message says which and what was expected."""


# tasks whose models the inference backend runs (the others train or score with torch alone)
BACKEND_TASKS = ("eval", "biencoder", "hybrid", "reranker", "rerank_eval")


@dataclass(frozen=True)
class ModelConfig:
    name: str = "minilm"  # alias 'minilm' (packaged all-MiniLM-L6-v2) or a local HF folder
    pooling: Literal["cls", "mean", "max", "last"] = "mean"
    normalize: bool = True
    query_prefix: str = ""
    doc_prefix: str = ""
    query_max_length: int = 64
    doc_max_length: int = 256


@dataclass(frozen=True)
class DataConfig:
    dataset: str = "scifact"
    data_root: str = ""  # "" -> $RAGTUNE_DATA -> ../shared/data beside the repo
    train_split: str = "train"
    dev_fraction: float = 0.1  # held out of train for checkpoint selection; test is never seen
    # auto: the collection's qrels/dev.tsv when it has one, else the dev_fraction hold-out;
    # holdout: always the hold-out; another name: that qrels split
    dev_split: str = "auto"
    eval_split: str = "test"
    train_file: str = ""  # optional pairs/triplets JSONL instead of qrels-derived pairs
    num_negatives: int = 0  # hard negatives per query (needs negatives in train_file or mining)
    # a document the train qrels call relevant to a query is never one of its in-batch negatives
    mask_known_positives: bool = True
    # pair: every (query, positive) record once an epoch; query: each query once, one positive drawn;
    # auto: query when train queries average more than 2 positives (records_per_query in timings.json)
    sampling: Literal["auto", "pair", "query"] = "auto"
    grade_weighted: bool = False  # per-query sampling draws positives in proportion to their grade
    min_grade: int = 1  # qrels grades below this are not positives for training
    # >= 2: cross-validation over eval_split's queries (ragtune/data/folds.py, ragtune/commands/cv.py):
    # fold cv_fold is the test part, the other folds train (dev held out of them)
    cv_folds: int = 0
    cv_fold: int = 0
    cv_seed: int = 0
    # >= 2: the dev hold-out is fold dev_fold of the train queries dealt into dev_folds seeded folds
    # (instead of the dev_fraction hold-out), so `ragtune cv --inner-folds` can run every fold as dev
    # and choose the training length on all train queries, not on a tenth of them
    dev_folds: int = 0
    dev_fold: int = 0


@dataclass(frozen=True)
class LossConfig:
    name: str = "info_nce"
    temperature: float = 0.05
    learn_temperature: bool = False
    symmetric: bool = False
    margin: float = 1.0
    distance: Literal["cosine", "euclidean"] = "cosine"  # triplet loss
    tau_plus: float = 0.1  # debiased_info_nce: prior share of unlabelled positives among in-batch negatives
    poly_epsilon: float = 1.0  # poly1_ce: weight of the extra (1 - p_positive) term
    distill_weight: float = 1.0  # info_nce_kl_distill: weight of the KL term next to InfoNCE


@dataclass(frozen=True)
class OptimConfig:
    lr: float = 2e-5
    weight_decay: float = 0.01
    betas: tuple[float, float] = (0.9, 0.999)
    warmup_ratio: float = 0.1
    schedule: Literal["linear", "cosine", "constant"] = "linear"
    max_grad_norm: float = 1.0


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 1
    max_steps: int = 0  # > 0: exactly this many optimizer steps (epochs then do not count)
    # > 0 (and max_steps 0): a budget in training examples, so a recipe sizes itself to the collection:
    # at most ceil(max_examples / (batch_size x grad_accum)) optimizer steps, and never more than `epochs`
    max_examples: int = 0
    batch_size: int = 32
    grad_accum: int = 1
    mixed_precision: Literal["no", "bf16", "fp16"] = "no"  # fp16 needs a GPU; bf16 on a CPU is slow (warned)
    eval_every: int = 0  # optimizer steps between dev evaluations; 0 = once per epoch, at least 3 times a run
    save_every: int = 0  # optimizer steps between checkpoints; 0 = at each evaluation
    metric_for_best: str = "ndcg@10"
    # best_dev: the best dev checkpoint, step 0 included; last: no dev hold-out (every train query trains)
    # and the final weights are the last step's, for a length chosen elsewhere (ragtune cv --inner-folds)
    select: Literal["best_dev", "last"] = "best_dev"
    # >= 0: stop after round(stop_at_epoch x steps per epoch) steps (0: the initial model); the learning
    # rate schedule still spans the whole budget, so the stop is a point on the same curve
    stop_at_epoch: float = -1.0
    resume: str = ""  # a checkpoint dir, or 'latest' in output_dir
    gradcache_chunk: int = 0  # > 0: GradCache micro-batch size for large in-batch batches
    cross_device_negatives: bool = True
    # > 0: bi-encoder batches drawn from windows of this many batches sorted by positive length, so
    # a batch pads less (worth it when docs are shorter than doc_max_length; see README performance)
    bucket_size: int = 0


@dataclass(frozen=True)
class EvalConfig:
    # how encoding, mining, test evaluation and reranking run their models (ragtune/inference/backends.py):
    # torch fp32, torch with int8 Linear layers, or an ONNX export in onnxruntime (fp32 or int8). Dev
    # evaluations inside training stay on torch fp32, so checkpoint selection never depends on it
    backend: Literal["torch", "torch_int8", "onnx", "onnx_int8"] = "torch"
    k_values: tuple[int, ...] = (1, 10, 100)
    # texts per forward when encoding. Small batches run fastest on a CPU, one batch per core side by side
    # (ragtune/models/parallel_batches.py; README, Inference); on a GPU raise it (e.g. 256)
    batch_size: int = 16
    top_k: int = 100
    cache_dir: str = ""  # "" -> $RAGTUNE_CACHE -> ~/.cache/ragtune
    baseline: bool = True  # training runs evaluate test before training too
    # the baseline scores a copy of the initial weights kept in memory AFTER training, so no test
    # label is read before the model is final (the no-label pipeline, ragtune/commands/adapt.py)
    baseline_after_training: bool = False
    dev_pool_top_k: int = 30  # dev corpus = dev positives + the initial model's top-k per dev query
    # > 0: POOLED test, corpus = test positives + the initial model's top-k per test query (reported
    # under split '<eval_split>-pool<k>'; exact for the initial model at k >= 10, optimistic after training).
    test_pool_top_k: int = 0


@dataclass(frozen=True)
class IndexConfig:
    """The dense top-k backend of evaluation, mining and the hybrid first stage (ragtune/retrieval/index.py)."""

    # exact: ragtune's brute-force scan (the reported metrics); faiss_flat: FAISS's exact scan;
    # faiss_hnsw / faiss_ivfpq: approximate (faiss-cpu, the `scale` extra)
    kind: Literal["exact", "faiss_flat", "faiss_hnsw", "faiss_ivfpq"] = "exact"
    hnsw_m: int = 32  # links per node
    ef_construction: int = 200
    ef_search: int = 128  # candidates kept per query: higher = closer to exact, slower
    nlist: int = 0  # IVF cells; 0 = about 4 sqrt(N)
    nprobe: int = 16  # IVF cells visited per query
    pq_m: int = 0  # PQ bytes per vector (must divide the dim); 0 = dim / 8
    refine: int = 4  # IVF-PQ: re-score the top refine x k candidates exactly (1 = no refinement)
    report_recall: bool = True  # an approximate index also runs exact search: ann_recall@k beside the metrics


@dataclass(frozen=True)
class LogConfig:
    wandb: Literal["offline", "online", "disabled"] = "offline"  # WANDB_MODE in the environment wins
    project: str = "ragtune"
    run_name: str = ""
    group: str = ""
    log_every: int = 10


@dataclass(frozen=True)
class MiningConfig:
    source: Literal["", "dense", "bm25"] = ""  # "" = no mining
    top_k: int = 100  # candidates retrieved per query
    rank_start: int = 0  # sample negatives from ranks [rank_start, rank_end) after removing positives
    rank_end: int = 50
    max_score_ratio: float = 0.95  # drop candidates scoring above this fraction of the positive (false negatives)
    num_random: int = 0  # random corpus negatives mixed in per query
    num_negatives: int = 0  # hard negatives sampled from the filtered window per query; 0 = keep all


@dataclass(frozen=True)
class HybridConfig:
    """BM25 + dense fusion (ragtune/retrieval/first_stage.py); BM25 itself is the `bm25` section."""

    fusion: Literal["weighted", "rrf"] = "weighted"  # weighted = min-max normalised scores; chosen on SciFact train
    weight: float = 0.5  # dense share; BM25 gets 1 - weight (both fusions)
    rrf_k: float = 60.0
    depth: int = 100  # candidates taken from each source before fusing
    tune: bool = False  # hybrid task: pick fusion/weight on the dev hold-out of train (never test)


@dataclass(frozen=True)
class BM25Settings:
    """BM25 (ragtune/retrieval/bm25.py; Lucene's scoring) wherever it runs: the bm25 and hybrid tasks,
    mining, the reranker's first stage."""

    k1: float = 1.2  # term-frequency saturation
    b: float = 0.75  # document-length normalisation (0: none, 1: full)


@dataclass(frozen=True)
class AdapterConfig:
    kind: Literal["linear", "low_rank", "residual"] = "linear"
    rank: int = 64  # low_rank / residual bottleneck
    bias: bool = False
    normalize: bool = True  # L2-normalise adapted queries (cached docs are normalised when model.normalize)
    # random (corpus) | hard (frozen top-k minus positives) | none (in-batch only)
    negatives: Literal["random", "hard", "none"] = "random"
    num_negatives: int = 1  # negatives per query in each group [pos, neg_1..neg_k]
    hard_top_k: int = 50  # hard negatives are drawn from the frozen encoder's top-k, positives removed
    num_threads: int = 1  # CPU threads for training (set after embedding): tiny matmuls stall when oversubscribed


@dataclass(frozen=True)
class RerankConfig:
    first_stage: Literal["dense", "bm25", "hybrid"] = "dense"
    first_stage_model: str = ""  # encoder folder for the dense first stage ("" -> model.name)
    retrieve_n: int = 50
    final_k: int = 10
    max_length: int = 256
    batch_size: int = 16  # pairs per forward at inference; as eval.batch_size (a GPU wants more)
    query_max_length: int = 64  # the query is cut to this first; truncation then cuts the document only
    doc_template: str = "{title} {text}"  # how a document is shown to the reranker
    group_size: int = 8  # training group [pos, neg_1..neg_{G-1}]
    hard_fraction: float = 0.5  # share of negatives from the first stage's top hard_depth; the rest random
    hard_depth: int = 50
    resample_negatives: bool = True  # draw fresh negatives every epoch (seed + epoch) instead of reusing epoch 0's
    dev_n: int = 20  # dev (checkpoint selection) reranks only the top dev_n of the held-out queries
    scorer: Literal["cross_encoder", "qlm"] = "cross_encoder"  # rerank_eval task
    # the cross-encoders' inference backend (test evaluations); "" = eval.backend. Apart from it, the
    # first stage can stay fp32 (the same candidate lists) while the reranker runs int8.
    # torch_int8_smooth: torch_int8 after SmoothQuant scales (ragtune/inference/smooth_quant.py)
    backend: Literal["", "torch", "torch_int8", "torch_int8_smooth", "onnx", "onnx_int8"] = ""
    # torch_int8_smooth: the alphas tried; the one whose logits are closest to fp32 on unlabelled
    # corpus pairs wins (plain int8 is always a candidate)
    int8_smooth_alphas: tuple[float, ...] = (0.5, 0.6, 0.7, 0.8, 0.9)
    # pseudo-queries (doc titles) x 8 BM25 neighbours from the corpus: half set the channel ranges,
    # half choose alpha (ragtune/inference/calibration.py; no split's queries or qrels)
    int8_calibration_queries: int = 64
    cascade_model: str = ""  # a cheap reranker folder: N -> cascade_keep with it, then the main one -> final_k
    cascade_keep: int = 20
    max_queries: int = 0  # > 0: rerank only the first n eval queries (slow scorers such as qlm)
    qlm_doc_max_tokens: int = 192  # passage tokens in the query-likelihood prompt
    teacher_model: str = ""  # a saved reranker whose scores are written for distillation
    interpolate: float = 0.0  # final = (1-w) z(reranker) + w z(first stage); 0 = reranker alone
    # rerank_eval: non-empty -> choose w from this grid on the dev hold-out of the train split
    # (data.dev_fraction, seed: the queries the reranker and bi-encoder tasks held out) instead
    interpolate_grid: tuple[float, ...] = ()


@dataclass(frozen=True)
class LateConfig:
    """Late interaction (ColBERT-style, task 'late_interaction'; ragtune/models/late_interaction.py)."""

    dim: int = 128  # each token's vector after the projection from the encoder's hidden size
    # query tokens (ColBERT's query length): the late model's own; model.query_max_length stays the dense
    # first stage's (dev pool, hybrid); model.doc_max_length is shared
    query_length: int = 32
    # queries padded to query_length with [MASK] tokens whose vectors also score (ColBERT)
    query_expansion: bool = True
    attend_to_expansion: bool = False  # the encoder's attention also sees the expansion tokens
    mask_punctuation: bool = True  # document tokens that are punctuation get no vector
    # the eval split is also scored as a reranker of this first stage's top rerank_n ("" = not)
    rerank_first_stage: Literal["", "dense", "bm25", "hybrid"] = "hybrid"
    rerank_n: int = 100
    search_batch_elements: int = 1 << 25  # query x document token scores held at once by exact search


@dataclass(frozen=True)
class SynthConfig:
    """Synthetic query generation (ragtune/generation/synth.py, ragtune/commands/synth.py)."""

    generator: str = "smollm2"  # alias (ragtune/models/generator.py) or a local HF folder
    chunk_size: int = 256  # generator tokens per passage
    chunk_overlap: int = 32
    queries_per_chunk: int = 1
    max_new_tokens: int = 32
    do_sample: bool = True
    temperature: float = 0.7
    top_p: float = 0.9
    batch_size: int = 8  # prompts per generate() call
    max_docs: int = 0  # > 0: a seeded random subset of the corpus (chosen without looking at any qrels)
    max_chunks_per_doc: int = 0  # > 0: only a document's first chunks (the first holds the title)
    max_chunks: int = 0  # > 0: stop after this many chunks (in the shuffled document order)
    min_words: int = 3  # shorter generations are dropped
    filter_top_k: int = 20  # keep a query iff the retriever ranks its source document in the top k; 0 = no filter
    seed: int = 0


@dataclass(frozen=True)
class AdaptConfig:
    """No-label adaptation (ragtune/commands/adapt.py, ragtune/generation/pseudo_labels.py): the synth
    section's queries, negatives from the zero-shot dense model, a label-free teacher, a filter."""

    # lm: the synth section's generator writes them; sentences: sentences cut from each document, removed
    # from its positive (inverse cloze, ragtune/generation/corpus_queries.py; no generator, minutes not hours;
    # synth.max_docs > 0 cuts them from a seeded subset of the documents)
    # log: the queries of adapt.query_log, no source document: trains task=query_tower only, with filter=none
    queries: Literal["lm", "sentences", "log"] = "lm"
    query_log: str = ""  # queries=log: an unlabelled query log, JSONL rows with "query" or "text"
    sentences_per_doc: int = 1  # queries=sentences: sentences per document (all removed from its positive)
    sentence_min_words: int = 6  # queries=sentences: shorter sentences are never queries (headings, "Methods:")

    # hybrid: BM25 + dense scores (hybrid section) for MarginMSE / KL; none: no scores, the loss ranks the
    # source document above the negatives (e.g. info_nce)
    teacher: Literal["hybrid", "none"] = "hybrid"
    # keep a query when this ranks its source document within filter_top_k of the corpus: the teacher,
    # the zero-shot dense model (round trip), or keep all
    filter: Literal["teacher", "dense", "none"] = "teacher"
    filter_top_k: int = 10
    samples_per_chunk: int = 0  # > 0: only each chunk's first n generations (of synth.queries_per_chunk)
    # negatives written per query, drawn from the dense top negatives_depth without the source; training
    # takes data.num_negatives of them, drawn afresh each epoch
    num_negatives: int = 4
    negatives_depth: int = 30
    # task=query_tower: the teacher's top list per query that the student's corpus softmax is matched to
    teacher_top_k: int = 100
    # the synth stage's folder; "" = <output_dir>/synth. Runs that differ only after generation (an
    # ablation of the teacher or the filter) can share one: generations resume from its log
    synth_dir: str = ""


@dataclass(frozen=True)
class GeneratorConfig:
    """Generator LoRA + instruction tuning (task 'generator', ragtune/generation/grounded.py)."""

    name: str = "smollm2"  # alias (ragtune/models/generator.py) or a local HF causal-LM folder
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    target_modules: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj")
    lora_layers: int = 0  # > 0: LoRA on the top n decoder layers only; backward then stops below them
    merge: bool = False  # export also writes the merged full model to <output_dir>/merged
    k_passages: int = 4  # passages per prompt, ids [1]..[k] in shuffled order
    passage_tokens: int = 40  # each passage (title + text) cut to this many generator tokens
    no_gold_share: float = 0.3  # share of examples with no gold passage -> abstention target
    # first stage for negatives: bm25 (cheap) | dense (model.name, cached embeddings) | hybrid
    negatives: Literal["bm25", "dense", "hybrid"] = "bm25"
    negatives_depth: int = 10  # negatives are drawn from the top-n non-gold candidates
    max_gold: int = 2  # gold passages shown at most (claims with more keep the first by id)
    train_paired: bool = False  # each train claim twice: gold shown, and the gold slot(s) swapped for negatives
    max_length: int = 512  # prompt + answer tokens; longer records are an error, not a silent cut
    max_new_tokens: int = 16  # the abstention sentence is 8 tokens with SmolLM2's tokenizer
    train_max_examples: int = 0  # > 0: cap the training records (CPU budget)
    dev_max_examples: int = 40  # dev = held-out train claims, evaluated by generation
    eval_max_examples: int = 200  # fixed seeded subset of test claims; 0 = all
    eval_batch_size: int = 16
    bucket_size: int = 8  # length bucketing window in batches; 0 = plain shuffle
    system_prompt: str = "You answer strictly from the numbered passages."
    query_first: bool = False  # the claim before the passages (a causal LM then reads them knowing the claim)
    # test answers also with a bias on the abstention sentence's first token, chosen on all dev claims
    # (dev exact match) for the baseline and the final model separately; plain greedy is still reported
    calibrate_abstention: bool = False


@dataclass(frozen=True)
class ExperimentConfig:
    task: str = "eval"  # see ragtune/tasks/__init__.py for the list
    output_dir: str = "runs/default"
    # a non-empty output_dir is refused unless resuming (train.resume) or overwriting (its run outputs are deleted)
    overwrite: bool = False
    seed: int = 42
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    index: IndexConfig = field(default_factory=IndexConfig)
    log: LogConfig = field(default_factory=LogConfig)
    mining: MiningConfig = field(default_factory=MiningConfig)
    hybrid: HybridConfig = field(default_factory=HybridConfig)
    bm25: BM25Settings = field(default_factory=BM25Settings)
    adapter: AdapterConfig = field(default_factory=AdapterConfig)
    rerank: RerankConfig = field(default_factory=RerankConfig)
    generator: GeneratorConfig = field(default_factory=GeneratorConfig)
    synth: SynthConfig = field(default_factory=SynthConfig)
    adapt: AdaptConfig = field(default_factory=AdaptConfig)
    late: LateConfig = field(default_factory=LateConfig)


# ---------------------------------------------------------------- loading and overrides


def call_python_file(path: str | Path, function: str, expected: type):
    """Import a Python file (a config or sweep file) and return `function()`, type-checked."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{'config' if expected is ExperimentConfig else 'sweep'} file not found: {path}")
    spec = importlib.util.spec_from_file_location(f"ragtune_file_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    if not hasattr(module, function):
        raise ConfigError(f"{path}: defines no {function}() function")
    value = getattr(module, function)()
    if not isinstance(value, expected):
        raise ConfigError(f"{path}: {function}() returned {type(value).__name__}, expected {expected.__name__}")
    return value


def load_config_file(path: str | Path, validate: bool = True) -> ExperimentConfig:
    """Import a Python config file and call its get_config(); validated unless `validate=False`
    (load_config validates once, after the command line's overrides)."""
    cfg = call_python_file(path, "get_config", ExperimentConfig)
    if validate:
        validate_config(cfg, source=path)
    return cfg


def flatten(cfg, prefix: str = "") -> dict[str, object]:
    """{'optim.lr': 2e-05, ...}: every leaf field under its dotted key."""
    out = {}
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        key = f"{prefix}{f.name}"
        if dataclasses.is_dataclass(value):
            out.update(flatten(value, key + "."))
        else:
            out[key] = value
    return out


def _leaf_types(cls, prefix: str = "") -> dict[str, object]:
    hints = typing.get_type_hints(cls)
    out = {}
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        if dataclasses.is_dataclass(tp):
            out.update(_leaf_types(tp, f"{prefix}{f.name}."))
        else:
            out[f"{prefix}{f.name}"] = tp
    return out


def _type_name(tp) -> str:
    return getattr(tp, "__name__", None) if typing.get_origin(tp) is None else str(tp).replace("typing.", "")


def _parse(key: str, raw: object, tp):
    """Convert a CLI string (or check a Python value) against the field type `tp`."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is typing.Literal:
        if raw not in args:
            close = difflib.get_close_matches(str(raw), [str(a) for a in args], n=1)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            raise ConfigError(f"--{key}: expected one of {list(args)}, got {raw!r}{hint}")
        return raw
    if origin in (typing.Union, types.UnionType):  # Optional[X]
        if raw is None or (isinstance(raw, str) and raw.lower() in ("none", "null")):
            return None
        return _parse(key, raw, next(a for a in args if a is not type(None)))
    if origin is tuple:
        items = [s for s in raw.split(",") if s.strip()] if isinstance(raw, str) else list(raw)
        item_types = [args[0]] * len(items) if len(args) == 2 and args[1] is Ellipsis else list(args)
        if len(item_types) != len(items):
            raise ConfigError(f"--{key}: expected {len(item_types)} comma-separated values, got {raw!r}")
        return tuple(_parse(key, item, t) for item, t in zip(items, item_types, strict=True))
    try:
        if tp is bool:
            if isinstance(raw, bool):
                return raw
            if isinstance(raw, str) and raw.lower() in ("true", "1", "yes", "on", "false", "0", "no", "off"):
                return raw.lower() in ("true", "1", "yes", "on")
            raise ValueError
        if tp is int:
            if isinstance(raw, bool) or (isinstance(raw, float) and not raw.is_integer()):
                raise ValueError
            return int(raw)
        if tp is float:
            if isinstance(raw, bool):
                raise ValueError
            return float(raw)
        if tp is str:
            if not isinstance(raw, str):
                raise ValueError
            return raw
    except (TypeError, ValueError):
        pass
    else:
        raise ConfigError(f"--{key}: unsupported field type {tp}")
    raise ConfigError(f"--{key}: expected {_type_name(tp)}, got {raw!r}")


def apply_overrides(cfg: ExperimentConfig, overrides: dict[str, object], source: str | Path | None = None,
                    validate: bool = True) -> ExperimentConfig:
    """Return cfg with dotted keys replaced; values may be CLI strings or typed Python values.

    The result is validated as a whole (types, choices, ranges, cross-field rules: `validate_config`);
    an error names `--key` for an overridden value, else the config file `source` and its line.
    """
    types_by_key = _leaf_types(type(cfg))
    updates: dict[str, object] = {}
    for key, raw in overrides.items():
        if key in RENAMED_KEYS:
            raise ConfigError(f"config key '{key}' is now '{RENAMED_KEYS[key]}'")
        if key not in types_by_key:
            close = difflib.get_close_matches(key, list(types_by_key), n=1, cutoff=0.5)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            raise ConfigError(f"unknown config key '{key}'{hint}")
        updates[key] = _parse(key, raw, types_by_key[key])
    cfg = _replace_nested(cfg, updates)
    if validate:
        validate_config(cfg, overridden=set(updates), source=source)
    return cfg


def load_config(path: str | Path, overrides: dict[str, object] | None = None) -> ExperimentConfig:
    """A config file plus dotted overrides, validated once after both are applied (the entry points' parser)."""
    return apply_overrides(load_config_file(path, validate=False), overrides or {}, source=path)


# ---------------------------------------------------------------- validation


def _at_least(low):
    return lambda v: v >= low, f"must be >= {low}"


def _above(low):
    return lambda v: v > low, f"must be > {low}"


def _within(low, high, high_open=False):
    if high_open:
        return lambda v: low <= v < high, f"must be in [{low}, {high})"
    return lambda v: low <= v <= high, f"must be in [{low}, {high}]"


def _above_within(low, high):
    return lambda v: low < v <= high, f"must be in ({low}, {high}]"


def _each(check):
    test, text = check
    return lambda v: all(test(x) for x in v), text.replace("must be", "every value must be")


# Tasks whose dev hold-out follows data.dev_folds and which can train without one (train.select=last).
DEV_FOLD_TASKS = ("adapter", "biencoder", "late_interaction")
# query_tower has no dev split at all: it runs with train.select=last only
SELECT_LAST_TASKS = (*DEV_FOLD_TASKS, "query_tower")

# Range rules per dotted key: (test, what it must be). Choices are Literal types, checked with the types.
RANGE_RULES: dict[str, tuple] = {
    "seed": _at_least(0),
    "model.query_max_length": _at_least(1), "model.doc_max_length": _at_least(1),
    "data.dev_fraction": _within(0.0, 1.0), "data.num_negatives": _at_least(0),
    "data.min_grade": _at_least(1), "data.cv_folds": _at_least(0), "data.cv_fold": _at_least(0),
    "data.dev_folds": _at_least(0), "data.dev_fold": _at_least(0),
    "loss.temperature": _above(0.0), "loss.margin": _at_least(0.0),
    "loss.tau_plus": _within(0.0, 0.999), "loss.distill_weight": _at_least(0.0),
    "optim.lr": _above(0.0), "optim.weight_decay": _at_least(0.0), "optim.betas": _each(_within(0.0, 1.0, True)),
    "optim.warmup_ratio": _within(0.0, 1.0), "optim.max_grad_norm": _at_least(0.0),
    "train.epochs": _at_least(0), "train.max_steps": _at_least(0), "train.max_examples": _at_least(0),
    "train.batch_size": _at_least(1),
    "train.grad_accum": _at_least(1), "train.eval_every": _at_least(0), "train.save_every": _at_least(0),
    "train.gradcache_chunk": _at_least(0), "train.bucket_size": _at_least(0),
    "eval.k_values": _each(_at_least(1)), "eval.batch_size": _at_least(1), "eval.top_k": _at_least(1),
    "eval.dev_pool_top_k": _at_least(1), "eval.test_pool_top_k": _at_least(0),
    "log.log_every": _at_least(1),
    "index.hnsw_m": _at_least(2), "index.ef_construction": _at_least(1), "index.ef_search": _at_least(1),
    "index.nlist": _at_least(0), "index.nprobe": _at_least(1), "index.pq_m": _at_least(0), "index.refine": _at_least(1),
    "mining.top_k": _at_least(1), "mining.rank_start": _at_least(0), "mining.rank_end": _at_least(1),
    "mining.max_score_ratio": _above(0.0), "mining.num_random": _at_least(0), "mining.num_negatives": _at_least(0),
    "hybrid.weight": _within(0.0, 1.0), "hybrid.rrf_k": _above(0.0), "hybrid.depth": _at_least(1),
    "bm25.k1": _at_least(0.0), "bm25.b": _within(0.0, 1.0),
    "adapter.rank": _at_least(1), "adapter.num_negatives": _at_least(0), "adapter.hard_top_k": _at_least(1),
    "adapter.num_threads": _at_least(1),
    "rerank.retrieve_n": _at_least(1), "rerank.final_k": _at_least(1), "rerank.max_length": _at_least(8),
    "rerank.batch_size": _at_least(1), "rerank.query_max_length": _at_least(1), "rerank.group_size": _at_least(2),
    "rerank.hard_fraction": _within(0.0, 1.0), "rerank.hard_depth": _at_least(1), "rerank.dev_n": _at_least(1),
    "rerank.cascade_keep": _at_least(1), "rerank.max_queries": _at_least(0),
    "rerank.qlm_doc_max_tokens": _at_least(1),
    "rerank.interpolate": _within(0.0, 1.0), "rerank.interpolate_grid": _each(_within(0.0, 1.0)),
    "rerank.int8_smooth_alphas": _each(_above_within(0.0, 1.0)), "rerank.int8_calibration_queries": _at_least(2),
    "late.dim": _at_least(1), "late.query_length": _at_least(1), "late.rerank_n": _at_least(1),
    "late.search_batch_elements": _at_least(1),
    "synth.chunk_size": _at_least(1), "synth.chunk_overlap": _at_least(0), "synth.queries_per_chunk": _at_least(1),
    "synth.max_new_tokens": _at_least(1), "synth.temperature": _above(0.0), "synth.top_p": _within(0.0, 1.0),
    "synth.batch_size": _at_least(1), "synth.max_docs": _at_least(0), "synth.max_chunks_per_doc": _at_least(0),
    "synth.max_chunks": _at_least(0), "synth.min_words": _at_least(0), "synth.filter_top_k": _at_least(0),
    "adapt.filter_top_k": _at_least(1), "adapt.samples_per_chunk": _at_least(0), "adapt.negatives_depth": _at_least(1),
    "adapt.num_negatives": _at_least(0), "adapt.sentences_per_doc": _at_least(1),
    "adapt.sentence_min_words": _at_least(1), "adapt.teacher_top_k": _at_least(1),
    "generator.lora_r": _at_least(1), "generator.lora_alpha": _above(0),
    "generator.lora_dropout": _within(0.0, 1.0, True),
    "generator.lora_layers": _at_least(0), "generator.k_passages": _at_least(1),
    "generator.passage_tokens": _at_least(1),
    "generator.no_gold_share": _within(0.0, 1.0), "generator.negatives_depth": _at_least(1),
    "generator.max_gold": _at_least(1), "generator.max_length": _at_least(1),
    "generator.max_new_tokens": _at_least(1),
    "generator.train_max_examples": _at_least(0), "generator.dev_max_examples": _at_least(0),
    "generator.eval_max_examples": _at_least(0), "generator.eval_batch_size": _at_least(1),
    "generator.bucket_size": _at_least(0),
}


def _cross_field_errors(cfg: ExperimentConfig) -> list[tuple[str, str]]:
    """(key, message) for rules that tie two fields together."""
    errors = []
    if cfg.mining.rank_start >= cfg.mining.rank_end:
        errors.append(("mining.rank_start", f"must be < mining.rank_end ({cfg.mining.rank_end}), "
                                            f"got {cfg.mining.rank_start}"))
    if cfg.eval.k_values and max(cfg.eval.k_values) > cfg.eval.top_k:
        errors.append(("eval.k_values", f"@{max(cfg.eval.k_values)} needs eval.top_k >= {max(cfg.eval.k_values)} "
                                        f"(retrieved depth), got top_k={cfg.eval.top_k}"))
    if cfg.data.cv_folds == 1:
        errors.append(("data.cv_folds", "must be 0 (no cross-validation) or >= 2, got 1"))
    if cfg.data.cv_fold >= max(cfg.data.cv_folds, 1):
        errors.append(("data.cv_fold", f"must be < data.cv_folds ({cfg.data.cv_folds}), got {cfg.data.cv_fold}"))
    if cfg.data.dev_folds == 1:
        errors.append(("data.dev_folds", "must be 0 (the dev_fraction hold-out) or >= 2, got 1"))
    if cfg.data.dev_fold >= max(cfg.data.dev_folds, 1):
        errors.append(("data.dev_fold", f"must be < data.dev_folds ({cfg.data.dev_folds}), got {cfg.data.dev_fold}"))
    if cfg.task == "adapter" and cfg.data.dev_folds and cfg.data.train_file:
        errors.append(("data.dev_folds", "the adapter holds dev out of a data.train_file by positive document, "
                                         "not by query folds: use one or the other"))
    if cfg.task not in DEV_FOLD_TASKS and cfg.data.dev_folds:
        errors.append(("data.dev_folds", f"only the {DEV_FOLD_TASKS} tasks hold dev out by folds"))
    if cfg.task not in SELECT_LAST_TASKS and cfg.train.select != "best_dev":
        errors.append(("train.select", f"'{cfg.train.select}' runs in the {SELECT_LAST_TASKS} tasks only"))
    if cfg.task == "query_tower" and cfg.train.select != "last":
        errors.append(("train.select", "the query_tower task has no dev split (its rows carry no positive): "
                                       "set 'last' and size the run with train.max_steps or train.epochs"))
    if not cfg.eval.k_values:
        errors.append(("eval.k_values", "needs at least one cutoff"))
    for key, backend, tasks in (("eval.backend", cfg.eval.backend, BACKEND_TASKS),
                                ("rerank.backend", cfg.rerank.backend, ("reranker", "rerank_eval"))):
        if backend in ("", "torch"):
            continue
        if cfg.task not in tasks:
            errors.append((key, f"'{backend}' runs the models of the {tasks} tasks; task '{cfg.task}' runs on torch"))
        elif backend.startswith("onnx") and not all(importlib.util.find_spec(m) for m in ("onnxruntime", "onnxscript")):
            errors.append((key, f"'{backend}' needs onnxruntime and onnxscript: pip install 'ragtune[onnx]'"))
    if cfg.rerank.backend == "torch_int8_smooth" and not cfg.rerank.int8_smooth_alphas:
        errors.append(("rerank.int8_smooth_alphas", "torch_int8_smooth needs at least one alpha"))
    if cfg.synth.chunk_overlap >= cfg.synth.chunk_size:
        errors.append(("synth.chunk_overlap", f"must be < synth.chunk_size ({cfg.synth.chunk_size}), "
                                              f"got {cfg.synth.chunk_overlap}"))
    from ragtune.losses import LOSSES  # here: ragtune.losses imports this module

    if cfg.loss.name not in LOSSES:
        close = difflib.get_close_matches(cfg.loss.name, sorted(LOSSES), n=1)
        hint = f"did you mean '{close[0]}'? " if close else ""
        errors.append(("loss.name", f"'{cfg.loss.name}' is not a registered loss; {hint}(known: {sorted(LOSSES)})"))
    elif cfg.task == "late_interaction" and LOSSES[cfg.loss.name].kind == "triplet":
        errors.append(("loss.name", f"'{cfg.loss.name}' measures distances between single vectors; late interaction "
                                    "trains with a loss over MaxSim scores (e.g. info_nce, margin_mse)"))
    if cfg.task == "late_eval" and cfg.late.rerank_first_stage in ("dense", "hybrid") \
            and not cfg.rerank.first_stage_model:
        errors.append(("rerank.first_stage_model", f"late.rerank_first_stage={cfg.late.rerank_first_stage!r} needs the "
                                                   "dense encoder (e.g. 'minilm'): the late model's folder is not one"))
    if cfg.rerank.query_max_length + 3 >= cfg.rerank.max_length:
        errors.append(("rerank.query_max_length", f"leaves no room for the document within rerank.max_length="
                                                  f"{cfg.rerank.max_length}, got {cfg.rerank.query_max_length}"))
    return errors


def _line_of(source: Path, key: str) -> int | None:
    """1-based line of the config file that sets `key`'s leaf (`lr=...` / `lr =`), if one clearly does."""
    leaf = key.rsplit(".", 1)[-1]
    try:
        lines = source.read_text().splitlines()
    except OSError:
        return None
    pattern = re.compile(rf"(?<![\w.]){re.escape(leaf)}\s*=(?!=)")
    hits = [i for i, line in enumerate(lines, start=1) if pattern.search(line.split("#", 1)[0])]
    return hits[0] if len(hits) == 1 else None


def _where(key: str, overridden: set[str], source: str | Path | None) -> str:
    if key in overridden or source is None:
        return f"--{key}"
    line = _line_of(Path(source), key)
    return f"{source}:{line}: {key}" if line else f"{source}: {key}"


def validate_config(cfg: ExperimentConfig, overridden: set[str] = frozenset(),
                    source: str | Path | None = None) -> None:
    """Raise ConfigError for the first bad value: a wrong type, a choice not in its Literal, a value out
    of range (RANGE_RULES) or a broken cross-field rule. Runs when the config is parsed, before any
    model or data loads. The message names `--key` for a CLI override, else the file and line."""
    types_by_key = _leaf_types(type(cfg))
    values = flatten(cfg)
    for key, value in values.items():
        try:
            _parse(key, value, types_by_key[key])
        except ConfigError as e:
            detail = str(e).split(": ", 1)[1]
            raise ConfigError(f"{_where(key, overridden, source)}: {detail}") from None
        rule = RANGE_RULES.get(key)
        if rule is not None and not rule[0](value):
            raise ConfigError(f"{_where(key, overridden, source)}: {rule[1]}, got {value!r}")
    for key, message in _cross_field_errors(cfg):
        raise ConfigError(f"{_where(key, overridden, source)}: {message}")


def _replace_nested(obj, updates: dict[str, object]):
    direct = {k: v for k, v in updates.items() if "." not in k}
    nested: dict[str, dict[str, object]] = {}
    for k, v in updates.items():
        if "." in k:
            head, rest = k.split(".", 1)
            nested.setdefault(head, {})[rest] = v
    for head, sub in nested.items():
        direct[head] = _replace_nested(getattr(obj, head), sub)
    return dataclasses.replace(obj, **direct)


def parse_cli_overrides(args: list[str]) -> dict[str, str]:
    """['--optim.lr=3e-5', '--train.epochs', '2'] -> {'optim.lr': '3e-5', 'train.epochs': '2'}."""
    out, i = {}, 0
    while i < len(args):
        arg = args[i]
        if not arg.startswith("--"):
            raise ConfigError(f"unexpected argument {arg!r}; overrides look like --section.key=value")
        if "=" in arg:
            key, value = arg[2:].split("=", 1)
        elif i + 1 < len(args) and not args[i + 1].startswith("--"):
            key, value = arg[2:], args[i + 1]
            i += 1
        else:
            raise ConfigError(f"{arg}: missing value (use {arg}=VALUE)")
        out[key] = value
        i += 1
    return out


# Keys that moved: a saved config.json with the old name still loads (resume, sweeps); a new
# override with it is refused with the new name.
RENAMED_KEYS = {"hybrid.bm25_k1": "bm25.k1", "hybrid.bm25_b": "bm25.b"}


def config_from_dict(flat_or_nested: dict) -> ExperimentConfig:
    """Rebuild a config from config.json (nested) or a flat {dotted: value} dict."""
    flat = flat_or_nested
    if any(isinstance(v, dict) for v in flat_or_nested.values()):
        flat = {}
        for k, v in flat_or_nested.items():
            if isinstance(v, dict):
                flat.update({f"{k}.{kk}": vv for kk, vv in v.items()})
            else:
                flat[k] = v
    return apply_overrides(ExperimentConfig(), {RENAMED_KEYS.get(k, k): v for k, v in flat.items()})


def save_config(cfg: ExperimentConfig, path: str | Path) -> None:
    """config.json, written to a temporary name and renamed (a reader never sees half a file)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(dataclasses.asdict(cfg), indent=2) + "\n")
    tmp.replace(path)
