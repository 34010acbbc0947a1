"""`ragtune adapt` end to end on tiny models: no qrels file is opened before the test evaluation
(a guard on every open of a qrels path fails the run otherwise), the pseudo-label file holds the
teacher's scores as the formula gives them, and bad settings fail before any generation."""

from __future__ import annotations

import builtins
import dataclasses
import io
import json
from pathlib import Path

import numpy as np
import pytest

from ragtune.config import (
    AdaptConfig,
    ConfigError,
    DataConfig,
    EvalConfig,
    ExperimentConfig,
    LogConfig,
    LossConfig,
    ModelConfig,
    SynthConfig,
    TrainConfig,
    apply_overrides,
)
from tests.generation.test_synth import tiny_llama, tiny_tokenizer


def adapt_config(tmp_path, model_dir, data_root, gen_dir, **adapt) -> ExperimentConfig:
    return ExperimentConfig(
        task="biencoder", output_dir=str(tmp_path / "adapt"), seed=3,
        model=ModelConfig(name=str(model_dir), query_max_length=16, doc_max_length=32),
        data=DataConfig(dataset="tiny", data_root=str(data_root), num_negatives=2, dev_fraction=0.25),
        loss=LossConfig(name="margin_mse"),
        train=TrainConfig(max_steps=3, batch_size=4),
        synth=SynthConfig(generator=str(gen_dir), chunk_size=6, chunk_overlap=2, max_chunks_per_doc=1, max_chunks=16,
                          queries_per_chunk=2, max_new_tokens=6, batch_size=4, temperature=1.0, min_words=1, seed=1),
        adapt=AdaptConfig(**{"filter": "none", "num_negatives": 3, **adapt}),
        eval=EvalConfig(k_values=(1, 10), batch_size=8, dev_pool_top_k=5), log=LogConfig(wandb="disabled"))


@pytest.fixture
def generator_dir(tmp_path) -> Path:
    tok = tiny_tokenizer()
    gen_dir = tmp_path / "gen"
    tiny_llama(len(tok)).save_pretrained(gen_dir)
    tok.save_pretrained(gen_dir)
    return gen_dir


def with_sentences(data_root: Path) -> Path:
    """The tiny corpus with each document's words cut into sentences of 3 (queries=sentences needs 2+)."""
    path = data_root / "tiny" / "corpus.jsonl"
    docs = [json.loads(line) for line in path.read_text().splitlines()]
    for d in docs:
        words = d["text"].split()
        d["text"] = " ".join(" ".join(words[i:i + 3]) + "." for i in range(0, len(words), 3))
    path.write_text("".join(json.dumps(d) + "\n" for d in docs))
    return data_root


SENTENCES = {"adapt.queries": "sentences", "adapt.teacher": "none", "loss.name": "info_nce",
             "adapt.sentence_min_words": "2"}


@pytest.mark.parametrize("queries", ["lm", "sentences"])
def test_adapt_opens_no_qrels_file_before_the_test_evaluation(tmp_path, tiny_model_dir, tiny_data_root, generator_dir,
                                                        monkeypatch, queries):
    import ragtune.commands.run as run_module
    from ragtune.commands.adapt import adapt

    testing, opened = [False], []

    def guard(open_fn):
        def guarded(file, *args, **kwargs):
            if not isinstance(file, int) and Path(file).parent.name == "qrels":  # <dataset>/qrels/<split>.tsv
                opened.append((str(file), testing[0]))
                if not testing[0]:
                    raise AssertionError(f"a qrels file was opened before the test evaluation: {file}")
            return open_fn(file, *args, **kwargs)
        return guarded

    monkeypatch.setattr(builtins, "open", guard(builtins.open))
    monkeypatch.setattr(io, "open", guard(io.open))
    evaluate_stage = run_module.evaluate_stage

    def evaluating(parts, model, stage, out=None):
        testing[0] = True
        return evaluate_stage(parts, model, stage, out)

    monkeypatch.setattr(run_module, "evaluate_stage", evaluating)
    cfg = adapt_config(tmp_path, tiny_model_dir, tiny_data_root, generator_dir)
    if queries == "sentences":
        cfg = apply_overrides(adapt_config(tmp_path, tiny_model_dir, with_sentences(tiny_data_root), generator_dir),
                              SENTENCES)
    results = adapt(cfg)
    assert opened and all(during_test for _, during_test in opened)
    assert {Path(f).name for f, _ in opened} == {"test.tsv"}  # never the train split's labels
    assert "baseline/test/ndcg@10" in results and "final/test/ndcg@10" in results
    out = Path(cfg.output_dir)
    train = json.loads((out / "train" / "config.json").read_text())
    assert train["data"]["train_split"] == "none" and train["data"]["train_file"].endswith("pseudo_labels.jsonl")
    if queries == "sentences":  # each positive is its document without the query sentence
        records = [json.loads(x) for x in (out / "pseudo_labels.jsonl").read_text().splitlines()]
        assert records and all(r["query"] not in r["pos"] and r["pos_id"] not in r["neg_ids"] for r in records)
        assert not (out / "synth").exists()  # no generator ran
    timings = json.loads((out / "train" / "timings.json").read_text())
    assert timings["dev_source"].startswith("0.25 of data.train_file's positive documents")
    # the guard does catch a read: loading the labelled train split outside an evaluation trips it
    from ragtune.data.folds import load_split

    testing[0] = False
    with pytest.raises(AssertionError, match="train.tsv"):
        load_split(cfg, "train")


def test_pseudo_labels_hold_the_teacher_formula(tmp_path, tiny_model_dir, tiny_data_root, generator_dir):
    """Every record's teacher_scores = h * dense range / (w * tau), recomputed here from BM25 and the
    encoder directly; the source is the positive and no negative is the source."""
    from ragtune.commands.adapt import pseudo_label, synth_config
    from ragtune.commands.synth import synthesize
    from ragtune.data.beir import load_corpus_only
    from ragtune.generation.pseudo_labels import minmax_over_top
    from ragtune.models.encoder import Encoder
    from ragtune.retrieval.bm25 import BM25Config, BM25Index

    cfg = adapt_config(tmp_path, tiny_model_dir, tiny_data_root, generator_dir)
    cfg = apply_overrides(cfg, {"hybrid.weight": "0.4", "hybrid.depth": "6"})
    synthesize(synth_config(cfg))
    stats = pseudo_label(cfg, show_progress=False)
    records = [json.loads(x) for x in (Path(cfg.output_dir) / "pseudo_labels.jsonl").read_text().splitlines()]
    assert stats["kept"] == len(records) == stats["queries"]  # filter none keeps all
    corpus = load_corpus_only("tiny", str(tiny_data_root)).corpus
    ids = list(corpus)
    encoder = Encoder.from_config(cfg.model)
    d = encoder.encode([corpus[i].full_text() for i in ids], kind="doc", batch_size=8, show_progress=False)
    index = BM25Index.from_corpus(corpus, BM25Config())
    for r in records:
        assert r["pos_id"] not in r["neg_ids"] and len(r["neg_ids"]) == 3
        cos = encoder.encode([r["query"]], kind="query", batch_size=1, show_progress=False)[0] @ d.T
        bm25 = index.score_all(r["query"])
        n_dense, span = minmax_over_top(cos[None], 6)
        n_bm25, _ = minmax_over_top(bm25[None], 6, positive_only=True)
        cols = [ids.index(x) for x in [r["pos_id"], *r["neg_ids"]]]
        h = 0.6 * n_bm25[0, cols] + 0.4 * n_dense[0, cols]
        np.testing.assert_allclose(r["teacher_scores"], h * span[0] / (0.4 * 0.05), rtol=1e-5, atol=1e-5)


def test_adapt_refuses_bad_settings_before_generating(tmp_path, tiny_model_dir, tiny_data_root, generator_dir):
    from ragtune.commands.adapt import adapt

    base = adapt_config(tmp_path, tiny_model_dir, tiny_data_root, generator_dir)
    for overrides, match in [({"loss.name": "info_nce"}, "ignores teacher scores"),
                             ({"adapt.teacher": "none"}, "needs teacher scores"),
                             ({"hybrid.weight": "0.0"}, "dense share"),
                             ({"task": "adapter"}, "trains"),
                             ({"adapt.samples_per_chunk": "3"}, "exceeds"),
                             ({"data.num_negatives": "4"}, "draws them from"),
                             ({"adapt.queries": "sentences"}, "use adapt.teacher=none")]:
        with pytest.raises(ConfigError, match=match):
            adapt(apply_overrides(base, overrides))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("WORLD_SIZE", "2")
        with pytest.raises(ConfigError, match="one process"):
            adapt(base)
    assert not (tmp_path / "adapt").exists()


QUERY_TOWER = {"task": "query_tower", "loss.name": "corpus_kl_distill", "train.select": "last",
               "adapt.teacher_top_k": "4"}


def write_log(tmp_path) -> Path:
    """An unlabelled query log in both accepted row shapes ("query", and BEIR's "text")."""
    path = tmp_path / "log.jsonl"
    path.write_text(json.dumps({"query": "protein galaxy study"}) + "\n" + json.dumps({"_id": "x", "text": "river"})
                    + "\n" + "".join(json.dumps({"query": f"engine violin {w}"}) + "\n" for w in range(6)))
    return path


@pytest.mark.parametrize("queries", ["lm", "sentences", "log"])
def test_query_tower_adapt_opens_no_qrels_file_and_keeps_the_corpus_embeddings(
        tmp_path, tiny_model_dir, tiny_data_root, generator_dir, monkeypatch, queries):
    """The query_tower path under the same qrels guard; then its final test metrics recomputed
    independently: the exported query encoder against the *initial* model's document embeddings."""
    import ragtune.commands.run as run_module
    from ragtune.commands.adapt import adapt
    from ragtune.data.beir import load_beir
    from ragtune.eval.metrics import evaluate
    from ragtune.models.encoder import Encoder
    from ragtune.retrieval.dense import dense_search

    testing = [False]
    real_open = builtins.open

    def guarded(file, *args, **kwargs):
        if not isinstance(file, int) and Path(file).parent.name == "qrels" and not testing[0]:
            raise AssertionError(f"a qrels file was opened before the test evaluation: {file}")
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", guarded)
    evaluate_stage = run_module.evaluate_stage

    def evaluating(parts, model, stage, out=None):
        testing[0] = True
        return evaluate_stage(parts, model, stage, out)

    monkeypatch.setattr(run_module, "evaluate_stage", evaluating)
    data_root = with_sentences(tiny_data_root) if queries == "sentences" else tiny_data_root
    overrides = {**QUERY_TOWER, "train.batch_size": "2", "train.max_steps": "4", "optim.lr": "1e-3"}
    if queries == "sentences":
        overrides.update({"adapt.queries": "sentences", "adapt.sentence_min_words": "2"})
    if queries == "log":
        overrides.update({"adapt.queries": "log", "adapt.query_log": str(write_log(tmp_path))})
    cfg = apply_overrides(adapt_config(tmp_path, tiny_model_dir, data_root, generator_dir), overrides)
    results = adapt(cfg)
    out = Path(cfg.output_dir)
    rows = [json.loads(x) for x in (out / "pseudo_labels.jsonl").read_text().splitlines()]
    assert rows and all(len(r["cand_ids"]) == len(r["cand_scores"]) == 4 for r in rows)
    if queries == "log":
        assert len(rows) == 8 and rows[1]["query"] == "river" and not (out / "synth").exists()
    if queries == "sentences":  # a sentence's own document holds it: never in its list
        sources = {json.loads(x)["query"]: json.loads(x)["pos_id"]
                   for x in (out / "sentence_queries.jsonl").read_text().splitlines()}
        assert all(sources[r["query"]] not in r["cand_ids"] for r in rows)

    testing[0] = True
    test = load_beir("tiny", "test", str(data_root))
    qids, doc_ids = list(test.queries), list(test.corpus)
    initial = Encoder.from_config(cfg.model)
    trained = Encoder.from_config(dataclasses.replace(cfg.model, name=str(out / "train" / "model")))
    d_emb = initial.encode([test.corpus[d].full_text() for d in doc_ids], kind="doc", show_progress=False)
    for encoder, stage in ((initial, "baseline"), (trained, "final")):
        q = encoder.encode([test.queries[i] for i in qids], kind="query", show_progress=False)
        direct = evaluate(dense_search(q, d_emb, qids, doc_ids, top_k=100), test.qrels, (1, 10))
        assert results[f"{stage}/test/ndcg@10"] == pytest.approx(direct["ndcg@10"], abs=1e-6)
    moved = [(a - b).abs().max().item() for a, b in zip(trained.parameters(), initial.parameters(), strict=True)]
    assert max(moved) > 0  # the query tower trained
    assert json.loads((out / "train" / "model" / "doc_encoder.json").read_text())["doc_encoder"] == cfg.model.name


def test_query_tower_lists_are_the_teachers_top_k(tmp_path, tiny_model_dir, tiny_data_root, generator_dir):
    """Each list = the hybrid's top k of the corpus, recomputed here from BM25 and the encoder, in student units."""
    from ragtune.commands.adapt import pseudo_label
    from ragtune.data.beir import load_corpus_only
    from ragtune.generation.pseudo_labels import minmax_over_top
    from ragtune.models.encoder import Encoder
    from ragtune.retrieval.bm25 import BM25Config, BM25Index

    log = write_log(tmp_path)
    cfg = apply_overrides(adapt_config(tmp_path, tiny_model_dir, tiny_data_root, generator_dir),
                          {**QUERY_TOWER, "adapt.queries": "log", "adapt.query_log": str(log), "hybrid.depth": "6"})
    pseudo_label(cfg, show_progress=False)
    rows = [json.loads(x) for x in (Path(cfg.output_dir) / "pseudo_labels.jsonl").read_text().splitlines()]
    corpus = load_corpus_only("tiny", str(tiny_data_root)).corpus
    ids = list(corpus)
    encoder = Encoder.from_config(cfg.model)
    d = encoder.encode([corpus[i].full_text() for i in ids], kind="doc", batch_size=8, show_progress=False)
    index = BM25Index.from_corpus(corpus, BM25Config())
    for r in rows:
        cos = encoder.encode([r["query"]], kind="query", batch_size=1, show_progress=False)[0] @ d.T
        n_dense, span = minmax_over_top(cos[None], 6)
        n_bm25, _ = minmax_over_top(index.score_all(r["query"])[None], 6, positive_only=True)
        h = 0.5 * n_bm25[0] + 0.5 * n_dense[0]
        top = np.argsort(-h, kind="stable")[:4]
        assert r["cand_ids"] == [ids[j] for j in top]
        np.testing.assert_allclose(r["cand_scores"], h[top] * span[0] / (0.5 * 0.05), atol=1e-3)


def test_query_tower_and_log_settings_are_refused_before_any_work(tmp_path, tiny_model_dir, tiny_data_root,
                                                                  generator_dir):
    from ragtune.commands.adapt import adapt

    base = adapt_config(tmp_path, tiny_model_dir, tiny_data_root, generator_dir)
    log = str(write_log(tmp_path))
    for overrides, match in [({"loss.name": "corpus_kl_distill"}, "task=query_tower"),
                             ({"adapt.queries": "log", "adapt.query_log": log}, "trains task=query_tower"),
                             ({**QUERY_TOWER, "adapt.queries": "log", "adapt.query_log": log,
                               "adapt.filter": "teacher"}, "set adapt.filter=none"),
                             ({**QUERY_TOWER, "adapt.queries": "log", "adapt.query_log": "nope.jsonl"}, "not a file"),
                             ({**QUERY_TOWER, "adapt.queries": "log",
                               "adapt.query_log": str(tiny_data_root / "tiny" / "queries.jsonl")},
                              "training on the test"),
                             ({**QUERY_TOWER, "loss.name": "kl_distill"}, "query_tower task cannot call"),
                             ({**QUERY_TOWER, "adapt.teacher": "none"}, "adapt.teacher=hybrid")]:
        with pytest.raises(ConfigError, match=match):
            adapt(apply_overrides(base, overrides))
    with pytest.raises(ConfigError, match="no dev split"):
        apply_overrides(base, {**QUERY_TOWER, "train.select": "best_dev"})
    assert not (tmp_path / "adapt").exists()


@pytest.mark.parametrize("row, match", [
    ({"qid": "a", "query": "q", "cand_ids": ["nope"], "cand_scores": [1.0]}, "not in the corpus"),
    ({"qid": "a", "query": "q", "cand_ids": [], "cand_scores": []}, "must both hold"),
    ({"qid": "a", "query": "q", "cand_ids": ["d0"], "cand_scores": ["high"]}, "must be numbers"),
    ({"qid": "a", "query": "q", "cand_ids": ["d0"]}, "missing field"),
])
def test_query_tower_lists_name_the_bad_line(tmp_path, row, match):
    from ragtune.data.beir import DataError
    from ragtune.tasks.query_tower import load_lists

    path = tmp_path / "lists.jsonl"
    good = {"qid": "g", "query": "q", "cand_ids": ["d0"], "cand_scores": [2.0]}
    path.write_text(json.dumps(good) + "\n" + json.dumps(row) + "\n")
    with pytest.raises(DataError, match=f"lists.jsonl:2: .*{match}"):
        load_lists(str(path), {"d0": 0, "d1": 1})
