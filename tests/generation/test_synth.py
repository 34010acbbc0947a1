"""Synthetic queries: chunk windows by hand, cleaning and dedup, the round-trip filter on a
hand-made retriever, the JSONL round trip through load_records, batched == unbatched greedy
generation on a tiny random Llama, resumption, and both entry points end to end on tiny models."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from ragtune.config import DataConfig, EvalConfig, ExperimentConfig, LogConfig, ModelConfig, SynthConfig
from ragtune.data.pairs import load_records
from ragtune.generation.synth import (
    build_prompt,
    chunk_tokens,
    clean_query,
    dedup,
    generate_all,
    generate_batch,
    normalize,
    pair_rows,
    round_trip_filter,
    select_queries,
    source_ranks,
    write_pairs,
)
from tests.conftest import FILLER, TOPICS

SPECIALS = ["<pad>", "<unk>", "<|im_start|>", "<|im_end|>"]
CHAT = ("{% for m in messages %}<|im_start|> {{ m['content'] }} <|im_end|> {% endfor %}"
        "{% if add_generation_prompt %}<|im_start|>{% endif %}")


def tiny_tokenizer():
    """Word-level tokenizer over t0..t29 + the tiny corpus words, with a chat template."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    words = [f"t{i}" for i in range(30)] + sorted({w for t in TOPICS for w in (t, t + "s")} | set(FILLER))
    words += [f"w{i}" for i in range(40)]
    vocab = {w: i for i, w in enumerate(SPECIALS + words)}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", unk_token="<unk>", eos_token="<|im_end|>")
    fast.chat_template = CHAT
    return fast


def tiny_llama(vocab_size: int, seed: int = 0):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=vocab_size, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                         initializer_range=0.2, pad_token_id=0, bos_token_id=2, eos_token_id=3)
    return LlamaForCausalLM(config).eval()


@pytest.fixture(scope="module")
def tok():
    return tiny_tokenizer()


def words(a: int, b: int) -> str:
    return " ".join(f"t{i}" for i in range(a, b))


# ---------------------------------------------------------------- chunking


@pytest.mark.parametrize("n, size, overlap, expected", [
    (10, 4, 1, [(0, 4), (3, 7), (6, 10)]),  # stride 3: the last window ends exactly at the text's end
    (10, 4, 0, [(0, 4), (4, 8), (8, 10)]),  # no overlap: a short last window
    (6, 4, 2, [(0, 4), (2, 6)]),  # a third window t4 t5 would be all overlap: not emitted
    (8, 4, 1, [(0, 4), (3, 7), (6, 8)]),  # the last window adds one new token (t7)
    (3, 4, 1, [(0, 3)]),  # shorter than one window
    (4, 4, 3, [(0, 4)]),  # exactly one window
    (5, 1, 0, [(0, 1), (1, 2), (2, 3), (3, 4), (4, 5)]),
])
def test_chunk_windows_by_hand(tok, n, size, overlap, expected):
    assert chunk_tokens(words(0, n), tok, size, overlap) == [words(a, b) for a, b in expected]


def test_chunk_edge_cases(tok):
    assert chunk_tokens("", tok, 4, 1) == []
    for size, overlap in [(4, 4), (4, 5), (0, 0), (4, -1)]:
        with pytest.raises(ValueError, match="overlap < size"):
            chunk_tokens(words(0, 5), tok, size, overlap)


# ---------------------------------------------------------------- cleaning and dedup


@pytest.mark.parametrize("raw, expected", [
    ("This passage supports the claim that aspirin lowers stroke risk. It also...", "aspirin lowers stroke risk."),
    ("Here's a claim:\n\n\"Statins reduce LDL cholesterol in adults.\"", "Statins reduce LDL cholesterol in adults."),
    ("The present study supports the conclusion that HPL levels fall early", "HPL levels fall early"),
    ("Claim: p53 mutations drive tumour growth", "p53 mutations drive tumour growth"),
    ("The study found that ADAR1 binds Dicer. Second sentence.", "ADAR1 binds Dicer."),
    ("Too short.", ""),
    ("", ""),
])
def test_clean_query(raw, expected):
    assert clean_query(raw, min_words=3) == expected


def test_dedup_normalises_and_keeps_first():
    queries = ["Aspirin lowers risk.", "aspirin  LOWERS risk", "", "B cells", "b-cells", "B cells!"]
    assert normalize("b-cells") == "b cells"
    assert dedup(queries) == [0, 3]


def test_select_queries_dedups_within_and_across_chunks():
    gens = [["Aspirin lowers stroke risk.", "aspirin lowers stroke risk", "ok"],  # dup within, too short
            ["Statins reduce LDL levels.", "ASPIRIN lowers stroke risk!"]]  # dup across chunks
    queries, idx, samples, counts = select_queries(gens, min_words=3)
    assert queries == ["Aspirin lowers stroke risk.", "Statins reduce LDL levels."]
    assert idx == [0, 1]
    assert samples == [0, 0]  # each kept query's position among its chunk's generations
    assert counts == {"generated": 5, "empty_or_short": 1, "duplicates": 2, "deduped": 2}


# ---------------------------------------------------------------- round-trip filter


def test_round_trip_filter_on_a_hand_made_retriever():
    d_emb = torch.eye(4)  # doc j = e_j
    q_emb = torch.tensor([[0.9, 0.1, 0.0, 0.0],  # source 0 is best: rank 1
                          [0.5, 0.4, 0.3, 0.0],  # source 2 is behind docs 0 and 1: rank 3
                          [0.2, 0.2, 0.0, 0.0],  # source 1 tied with doc 0: ties favour the source, rank 1
                          [0.1, 0.2, 0.3, 0.4]])  # source 0 is last: rank 4
    source = torch.tensor([0, 2, 1, 0])
    assert source_ranks(q_emb, d_emb, source, chunk=3).tolist() == [1, 3, 1, 4]  # chunk=3 spans 2 chunks
    keep, ranks = round_trip_filter(q_emb, d_emb, source, top_k=2)
    assert keep.tolist() == [True, False, True, False]
    assert round_trip_filter(q_emb, d_emb, source, top_k=3)[0].tolist() == [True, True, True, False]


# ---------------------------------------------------------------- JSONL


def test_pairs_jsonl_round_trip_through_load_records(tmp_path):
    queries, passages = ["claim one here", "claim two here", "claim three here"], ["chunk a", "chunk b"]
    rows = pair_rows(queries, passages, [0, 1, 1], ["d7", "d9"], np.array([True, False, True]))
    path = tmp_path / "out" / "pairs.jsonl"
    write_pairs(path, rows)
    assert not list(path.parent.glob(".*tmp*"))  # the temp file was renamed away
    records = load_records(path)
    assert [(r.qid, r.query, r.pos, r.pos_id) for r in records] == [
        ("synth-0", "claim one here", "chunk a", "d7"), ("synth-1", "claim three here", "chunk b", "d9")]


# ---------------------------------------------------------------- generation


def test_batched_generation_equals_unbatched_greedy(tok):
    model = tiny_llama(len(tok))
    prompts = [f"{words(0, 3)}", f"{words(5, 17)} river", f"{words(2, 9)}"]  # different lengths: left padding
    batched, n_batched = generate_batch(model, tok, prompts, n=1, max_new_tokens=8, do_sample=False)
    alone = [generate_batch(model, tok, [p], n=1, max_new_tokens=8, do_sample=False) for p in prompts]
    assert batched == [texts[0] for texts, _ in alone]
    assert n_batched == sum(n for _, n in alone)
    assert any(t[0].strip() for t in batched)  # something was generated
    # The token count is new tokens up to the first EOS: recount from the raw ids.
    ids = tok(prompts[0], return_tensors="pt")["input_ids"]
    raw = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=8, do_sample=False,
                         pad_token_id=0)[0, ids.shape[1]:].tolist()
    assert alone[0][1] == (raw.index(3) + 1 if 3 in raw else len(raw))


def test_sampling_is_seeded_and_gives_n_per_prompt(tok):
    model = tiny_llama(len(tok))
    a, _ = generate_batch(model, tok, ["t1 t2", "t3"], n=3, max_new_tokens=6, temperature=1.0, top_p=1.0, seed=5)
    b, _ = generate_batch(model, tok, ["t1 t2", "t3"], n=3, max_new_tokens=6, temperature=1.0, top_p=1.0, seed=5)
    assert a == b and len(a) == 2 and all(len(x) == 3 for x in a)


def test_generate_all_resumes_from_its_log(tok, tmp_path):
    model = tiny_llama(len(tok))
    scfg = SynthConfig(batch_size=2, max_new_tokens=5, queries_per_chunk=1, seed=3)
    passages = [words(i, i + 4) for i in range(5)]
    log = tmp_path / "gen.partial.jsonl"
    full, stats = generate_all(model, tok, passages, scfg, log)
    assert stats["resumed_batches"] == 0 and len(full) == 5

    lines = log.read_text().splitlines()  # simulate a crash after the first batch, mid-line in the second
    log.write_text(lines[0] + "\n" + lines[1][:10])
    calls = []
    original = model.generate
    model.generate = lambda **kw: calls.append(1) or original(**kw)
    resumed, again = generate_all(model, tok, passages, scfg, log)
    assert resumed == full  # the same samples: each batch is seeded by its start
    assert again["resumed_batches"] == 1 and len(calls) == 2  # batches 2 and 3 only
    # Token counts cover the resumed batch too (read back from the log), not only the new ones.
    assert again["generated_tokens"] == stats["generated_tokens"] > 0
    assert again["prompt_tokens"] == stats["prompt_tokens"] == 5 * len(tok(build_prompt(passages[0], tok),
                                                                           add_special_tokens=False)["input_ids"])


# ---------------------------------------------------------------- entry points end to end


def synth_config(tmp_path, model_dir, data_root, gen_dir) -> ExperimentConfig:
    return ExperimentConfig(
        task="synth", output_dir=str(tmp_path / "synth"),
        model=ModelConfig(name=str(model_dir), query_max_length=16, doc_max_length=32),
        data=DataConfig(dataset="tiny", data_root=str(data_root)),
        synth=SynthConfig(generator=str(gen_dir), chunk_size=6, chunk_overlap=2, max_docs=8, max_chunks=10,
                          max_new_tokens=6, batch_size=4, do_sample=True, temperature=1.0, min_words=1,
                          filter_top_k=10, seed=1),
        eval=EvalConfig(batch_size=8), log=LogConfig(wandb="disabled"))


def test_synth_cli_then_adapter_on_synthetic_pairs_only(tmp_path, tiny_model_dir, tiny_data_root, tok,
                                                        subprocess_env):
    import subprocess
    import sys

    from ragtune.commands.synth import synthesize
    from tests.conftest import REPO

    gen_dir = tmp_path / "gen"
    tiny_llama(len(tok)).save_pretrained(gen_dir)
    tok.save_pretrained(gen_dir)
    cfg = synth_config(tmp_path, tiny_model_dir, tiny_data_root, gen_dir)
    stats = synthesize(cfg)
    out = Path(cfg.output_dir)
    generated = [json.loads(x) for x in (out / "generated.jsonl").read_text().splitlines()]
    pairs = load_records(out / "synthetic_pairs.jsonl")
    assert stats["chunks"] == 10 and stats["generated"] == 10
    assert stats["generated"] == stats["empty_or_short"] + stats["duplicates"] + stats["deduped"]
    assert stats["deduped"] == len(generated) and stats["kept"] == len(pairs) == sum(g["kept"] for g in generated)
    assert all(g["kept"] == (g["rank"] <= 10) for g in generated)
    assert json.loads((out / "stats.json").read_text())["kept"] == len(pairs)
    assert synthesize(cfg)["resumed_batches"] == 3  # 10 chunks / batch 4: everything came from the log

    # Adapter on these pairs alone: dev must be synthetic queries, never the tiny split's qrels.
    if len({p.pos_id for p in pairs}) < 3:
        pytest.skip("the random tiny generator left too few pairs for a train/dev split")
    config = tmp_path / "adapter_config.py"
    config.write_text(f"""
from ragtune.config import *

def get_config():
    return ExperimentConfig(task="adapter", output_dir={str(tmp_path / 'adapter')!r}, seed=7,
        model=ModelConfig(name={str(tiny_model_dir)!r}, query_max_length=16, doc_max_length=32),
        data=DataConfig(dataset="tiny", data_root={str(tiny_data_root)!r}, dev_fraction=0.3,
                        train_file={str(out / 'synthetic_pairs.jsonl')!r}),
        adapter=AdapterConfig(negatives="random", num_negatives=1),
        train=TrainConfig(epochs=2, batch_size=4), optim=OptimConfig(lr=1e-2),
        eval=EvalConfig(k_values=(1, 5, 10), batch_size=8), log=LogConfig(wandb="disabled", log_every=1))
""")
    proc = subprocess.run([sys.executable, str(REPO / "experiments" / "run.py"), "--config", str(config)],
                          env=subprocess_env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    timings = json.loads((tmp_path / "adapter" / "timings.json").read_text())
    assert timings["dev_queries"] >= 1 and timings["train_queries"] + timings["dev_queries"] == len(pairs)
    results = json.loads((tmp_path / "adapter" / "results.json").read_text())
    assert "final/test/ndcg@10" in results and "baseline/test/ndcg@10" in results


def test_adapter_rejects_pairs_without_corpus_ids(tmp_path):
    from ragtune.data.beir import DataError
    from ragtune.data.pairs import queries_from_records

    write_pairs(tmp_path / "p.jsonl", [{"qid": "s0", "query": "q", "pos": "p", "pos_id": "d1"},
                                       {"qid": "s1", "query": "q2", "pos": "p", "pos_id": "nope"}])
    with pytest.raises(DataError, match="record 2 needs a qid and a pos_id"):
        queries_from_records(load_records(tmp_path / "p.jsonl"), {"d1": 0}, "p.jsonl")
    queries, qrels = queries_from_records(load_records(tmp_path / "p.jsonl")[:1], {"d1": 0}, "p.jsonl")
    assert queries == {"s0": "q"} and qrels == {"s0": {"d1": 1}}


def test_adapter_dev_from_train_file_holds_out_whole_documents():
    from ragtune.data.pairs import split_by_positive_doc

    qrels = {f"q{i}": {f"d{i % 5}": 1} for i in range(20)}  # 4 queries per document
    fit, dev = split_by_positive_doc(list(qrels), qrels, 0.4, seed=0)
    dev_docs = {d for q in dev for d in qrels[q]}
    assert len(dev_docs) == 2 and len(dev) == 8 and len(fit) == 12  # round(0.4 * 5) documents, all their queries
    assert not dev_docs & {d for q in fit for d in qrels[q]}
    assert sorted(fit + dev) == sorted(qrels)
