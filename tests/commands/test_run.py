"""The real entry point, end to end, on a tiny random BERT and a tiny BEIR folder."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from tests.conftest import REPO

pytrec_eval = pytest.importorskip("pytrec_eval")

CONFIG = """
from ragtune.config import *

def get_config():
    return ExperimentConfig(
        task={task!r}, output_dir={out!r}, seed=7,
        model=ModelConfig(name={model!r}, query_max_length=16, doc_max_length=32),
        data=DataConfig(dataset="tiny", data_root={root!r}, dev_fraction=0.2),
        eval=EvalConfig(k_values=(1, 5, 10), batch_size=8, dev_pool_top_k=10),
        log=LogConfig(wandb="disabled", log_every=1),
    )
"""


def run_entry(tmp_path, env, task, model, root, *overrides):
    cfg = tmp_path / f"{task}_config.py"
    out = tmp_path / f"run_{task}"
    cfg.write_text(CONFIG.format(task=task, out=str(out), model=str(model), root=str(root)))
    proc = subprocess.run([sys.executable, str(REPO / "experiments" / "run.py"), "--config", str(cfg), *overrides],
                          env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out, proc


def independent_metrics(model_dir, root):
    """Mean-pooled, normalised embeddings straight from transformers, scored by pytrec_eval."""
    from transformers import AutoModel, AutoTokenizer

    tok, bert = AutoTokenizer.from_pretrained(model_dir), AutoModel.from_pretrained(model_dir).eval()
    corpus = [json.loads(line) for line in (root / "tiny" / "corpus.jsonl").read_text().splitlines()]
    queries = {q["_id"]: q["text"] for q in map(json.loads, (root / "tiny" / "queries.jsonl").read_text().splitlines())}
    qrels = {}
    for line in (root / "tiny" / "qrels" / "test.tsv").read_text().splitlines()[1:]:
        q, d, s = line.split("\t")
        qrels.setdefault(q, {})[d] = int(s)

    def embed(texts, max_len):
        with torch.no_grad():
            t = tok(texts, padding=True, truncation=True, max_length=max_len, return_tensors="pt")
            h = bert(**t).last_hidden_state
            m = t["attention_mask"].unsqueeze(-1).float()
            e = (h * m).sum(1) / m.sum(1)
            return torch.nn.functional.normalize(e, dim=-1).numpy()

    d = embed([f"{c['title']} {c['text']}" for c in corpus], 32)
    qids = list(qrels)
    q = embed([queries[i] for i in qids], 16)
    scores = q @ d.T
    run = {}
    for i, qid in enumerate(qids):
        top = np.argsort(-scores[i])[:10]
        run[qid] = {corpus[j]["_id"]: float(scores[i, j]) for j in top}
    res = pytrec_eval.RelevanceEvaluator(qrels, {"ndcg_cut_10", "recall_5"}).evaluate(run)
    return {"ndcg@10": np.mean([r["ndcg_cut_10"] for r in res.values()]),
            "recall@5": np.mean([r["recall_5"] for r in res.values()])}


def test_zero_shot_eval_matches_independent_computation(tmp_path, subprocess_env, tiny_model_dir, tiny_data_root):
    out, proc = run_entry(tmp_path, subprocess_env, "eval", tiny_model_dir, tiny_data_root)
    results = json.loads((out / "results.json").read_text())
    expected = independent_metrics(tiny_model_dir, tiny_data_root)
    assert results["final/test/ndcg@10"] == pytest.approx(expected["ndcg@10"], abs=1e-4)
    assert results["final/test/recall@5"] == pytest.approx(expected["recall@5"], abs=1e-4)
    assert results.pop("inference_backend") == "torch"  # every results file names how its tests ran
    assert all(k.startswith("final/test/") for k in results)
    assert json.loads((out / "config.json").read_text())["model"]["doc_max_length"] == 32
    assert "test/ndcg@10" in proc.stdout  # the printed table


def test_zero_shot_eval_on_the_onnx_backend_matches_the_independent_computation(
        tmp_path, subprocess_env, tiny_model_dir, tiny_data_root):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    out, _ = run_entry(tmp_path, subprocess_env, "eval", tiny_model_dir, tiny_data_root, "--eval.backend=onnx")
    results = json.loads((out / "results.json").read_text())
    expected = independent_metrics(tiny_model_dir, tiny_data_root)
    assert results["inference_backend"] == "onnx"
    assert results["final/test/ndcg@10"] == pytest.approx(expected["ndcg@10"], abs=1e-4)
    assert results["final/test/recall@5"] == pytest.approx(expected["recall@5"], abs=1e-4)


def test_biencoder_training_improves_and_exports(tmp_path, subprocess_env, tiny_model_dir, tiny_data_root):
    out, _ = run_entry(tmp_path, subprocess_env, "biencoder", tiny_model_dir, tiny_data_root,
                       "--train.epochs=8", "--train.batch_size=8", "--optim.lr=1e-3", "--optim.warmup_ratio=0.05",
                       "--loss.temperature=0.1")
    results = json.loads((out / "results.json").read_text())
    assert results["final/test/ndcg@10"] >= results["baseline/test/ndcg@10"] + 0.05
    lines = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    losses = [r["train/loss"] for r in lines if "train/loss" in r]
    assert losses[-1] < losses[0]
    assert any("dev/ndcg@10" in r for r in lines)
    assert (out / "checkpoints" / "latest").is_file() and (out / "best" / "weights.pt").is_file()
    from ragtune.models.encoder import Encoder

    reloaded = Encoder.load(out / "model")
    assert reloaded.cfg.doc_max_length == 32


def test_biencoder_mines_bm25_negatives_in_run(tmp_path, subprocess_env, tiny_model_dir, tiny_data_root):
    out, proc = run_entry(tmp_path, subprocess_env, "biencoder", tiny_model_dir, tiny_data_root,
                          "--mining.source=bm25", "--mining.num_random=1", "--data.num_negatives=1",
                          "--loss.name=triplet", "--loss.margin=0.2", "--train.epochs=2", "--train.batch_size=8",
                          "--train.bucket_size=2")  # length-bucketed batches on the way
    mined = list(out.glob("mined-bm25-*.jsonl"))  # named by the settings that made it
    assert len(mined) == 1 and not list(out.glob(".*.tmp"))
    records = [json.loads(line) for line in mined[0].read_text().splitlines()]
    assert len(records) == 30  # every train query of the tiny set (dev hold-out included; training drops it)
    assert all(r["negs"] and r["pos_id"] not in r["neg_ids"] for r in records)
    assert "mined 30 records from bm25" in proc.stdout
    metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert all(r["train/loss"] >= 0 for r in metrics if "train/loss" in r)  # a hinge loss
    assert "final/test/ndcg@10" in json.loads((out / "results.json").read_text())


@pytest.mark.parametrize("override,message", [
    ("--task=biencodr", "error: unknown task 'biencodr'; did you mean 'biencoder'?"),
    ("--loss.name=infonce", "error: --loss.name: 'infonce' is not a registered loss; did you mean 'info_nce'?"),
    ("--optim.lrr=1", "error: unknown config key 'optim.lrr'; did you mean 'optim.lr'?"),
    ("--data.dataset=nope", "error: dataset 'nope' not found"),
    # parsed before anything loads: the model folder does not even exist
    ("--optim.schedule=foo --model.name=/nonexistent",
     "error: --optim.schedule: expected one of ['linear', 'cosine', 'constant'], got 'foo'"),
    ("--train.grad_accum=0 --model.name=/nonexistent", "error: --train.grad_accum: must be >= 1, got 0"),
    ("--train.mixed_precision=fp16", "error: --train.mixed_precision=fp16 needs a CUDA GPU"),
    # qrels records carry no negatives: refused at load, not at training step 2
    ("--data.num_negatives=1", "error: qrels of tiny/train: 30 of 30 record(s) have no negatives but "
                               "data.num_negatives=1"),
    ("--train.batch_size=64", "error: train.batch_size=64 leaves the training loader without a batch (24 training "
                              "records"),
])
def test_bad_input_exits_2_with_a_one_line_reason(tmp_path, subprocess_env, tiny_model_dir, tiny_data_root,
                                                  override, message):
    cfg = tmp_path / "c.py"
    cfg.write_text(CONFIG.format(task="biencoder", out=str(tmp_path / "out"), model=str(tiny_model_dir),
                                 root=str(tiny_data_root)))
    cmd = [sys.executable, str(REPO / "experiments" / "run.py"), "--config", str(cfg), *override.split()]
    proc = subprocess.run(cmd, env=subprocess_env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and message in proc.stderr and "Traceback" not in proc.stderr


def test_bf16_on_a_cpu_warns_with_where_the_cost_is_measured(monkeypatch, capsys):
    from ragtune.commands.run import check_precision
    from ragtune.config import ExperimentConfig, apply_overrides

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    check_precision(apply_overrides(ExperimentConfig(), {"train.mixed_precision": "bf16"}))
    assert "warning: train.mixed_precision=bf16 on a CPU" in capsys.readouterr().err
    check_precision(ExperimentConfig())
    assert capsys.readouterr().err == ""


def test_mined_negatives_are_keyed_by_the_settings_that_made_them():
    from ragtune.config import ExperimentConfig, apply_overrides
    from ragtune.tasks.biencoder import mined_file

    base = apply_overrides(ExperimentConfig(), {"mining.source": "bm25", "output_dir": "runs/x"})
    names = {mined_file(apply_overrides(base, o)).name for o in (
        {}, {"mining.source": "dense"}, {"mining.rank_end": "30"}, {"seed": "1"}, {"bm25.k1": "0.9"})}
    assert len(names) == 5 and all(n.startswith("mined-") and n.endswith(".jsonl") for n in names)
    assert mined_file(apply_overrides(base, {"log.log_every": "1", "optim.lr": "1e-4"})) == mined_file(base)


def test_baseline_after_training_scores_the_initial_weights(tmp_path, subprocess_env, tiny_model_dir, tiny_data_root):
    """eval.baseline_after_training evaluates a copy of the initial weights once training is done: the
    baseline and final rows equal those of a run that evaluates the baseline first."""
    args = ("--train.epochs=2", "--train.batch_size=8", "--optim.lr=1e-3", "--loss.temperature=0.1")
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first, _ = run_entry(tmp_path / "a", subprocess_env, "biencoder", tiny_model_dir, tiny_data_root, *args)
    after, _ = run_entry(tmp_path / "b", subprocess_env, "biencoder", tiny_model_dir, tiny_data_root, *args,
                         "--eval.baseline_after_training=true")
    expected = json.loads((first / "results.json").read_text())
    got = json.loads((after / "results.json").read_text())
    assert got.keys() == expected.keys() and list(got)[0].startswith("baseline/")
    for key, value in expected.items():
        assert got[key] == pytest.approx(value, abs=1e-6), key
    assert got["final/test/ndcg@10"] != got["baseline/test/ndcg@10"]  # training did change the weights
