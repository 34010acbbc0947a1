"""LoRA on a tiny in-process Llama: what trains, peft save/reload, merge, a few steps lower the loss,
and the 'generator' task end to end through experiments/run.py."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from peft import PeftModel

from ragtune.config import GeneratorConfig
from ragtune.data.instruct import InstructRecord, answer_loss, collate_left, encode_record, prompt_ids
from ragtune.generation.grounded import INSTRUCTION
from ragtune.models.generator import add_lora, load_adapter, merge_lora, save_adapter, trainable_parameters
from tests.conftest import FILLER, REPO, TOPICS

SPECIALS = ["<pad>", "<unk>", "<|im_start|>", "<|im_end|>"]
WORDS = (["[", "]", ".", ",", ":", "system", "user", "assistant", "Passages", "Claim", "Information", "not",
          "available", "provided", "context", "Which", "passages", "support", "claim", "?", "Answer", "only", "with",
          "their", "ids", "e", "g", "or", "If", "no", "passage", "supports", "it", "answer", "exactly", "You",
          "strictly", "from", "numbered", "the", "in"] + [str(i) for i in range(10)]
         + sorted({w for t in TOPICS for w in (t, t + "s")} | set(FILLER)) + [f"w{i}" for i in range(40)])
# SmolLM2's template in miniature: '<|im_start|>role\ncontent<|im_end|>\n' per message.
CHAT_TEMPLATE = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
                 "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


def tiny_tokenizer():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {w: i for i, w in enumerate(SPECIALS + list(dict.fromkeys(WORDS)))}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()  # splits '[2]' into '[', '2', ']'
    tok.decoder = decoders.WordPiece(prefix="##")  # joins tokens with spaces
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", pad_token="<pad>", eos_token="<|im_end|>",
                                   additional_special_tokens=["<|im_start|>", "<|im_end|>"])
    fast.chat_template = CHAT_TEMPLATE
    return fast


def tiny_llama(seed: int = 0, vocab_size: int = 160, init: float = 0.02):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=vocab_size, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                         initializer_range=init)
    return LlamaForCausalLM(config).eval()


def write_tiny_llama(path: Path) -> Path:
    tok = tiny_tokenizer()
    tiny_llama(vocab_size=len(tok)).save_pretrained(path)
    tok.save_pretrained(path)
    return path


LORA = GeneratorConfig(lora_r=4, lora_alpha=8, lora_dropout=0.0, target_modules=("q_proj", "v_proj"))


def _randomize_lora(model, seed: int = 1):
    """lora_B starts at 0 (adapter = identity); give it values so the tests compare something."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_" in name:
                p.copy_(torch.randn(p.shape, generator=g) * 0.1)


def test_only_adapter_parameters_train_and_start_as_identity():
    base = tiny_llama()
    x = torch.randint(0, 160, (2, 7))
    before = base(input_ids=x).logits
    model = add_lora(base, LORA)
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_A" in n or "lora_B" in n for n in trainable)
    # r * (in + out) per adapted matrix: q_proj 32 -> 32, v_proj 32 -> 16 (2 kv heads of 8), 2 layers
    assert trainable_parameters(model)[0] == 2 * (4 * (32 + 32) + 4 * (32 + 16))
    torch.testing.assert_close(model(input_ids=x).logits, before)  # B = 0: exactly the base model


def test_lora_layers_adapts_only_the_top_layers():
    model = add_lora(tiny_llama(), GeneratorConfig(lora_r=4, target_modules=("q_proj",), lora_layers=1))
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    assert names and all(".layers.1." in n for n in names)
    with pytest.raises(ValueError, match="lora_layers=3"):
        add_lora(tiny_llama(), GeneratorConfig(lora_layers=3))


def test_bad_target_module_names_the_model_layers():
    with pytest.raises(ValueError, match="q_proj"):
        add_lora(tiny_llama(), GeneratorConfig(target_modules=("query",)))


def test_peft_reload_and_merge_give_identical_logits(tmp_path):
    model = add_lora(tiny_llama(seed=3), LORA)
    _randomize_lora(model)
    x = torch.randint(0, 160, (3, 9))
    expected = model(input_ids=x).logits
    assert not torch.allclose(expected, tiny_llama(seed=3)(input_ids=x).logits, atol=1e-4)  # the adapter matters
    save_adapter(model, tmp_path / "adapter")
    assert (tmp_path / "adapter" / "adapter_config.json").is_file()
    assert (tmp_path / "adapter" / "adapter_model.safetensors").is_file()
    reloaded = PeftModel.from_pretrained(tiny_llama(seed=3), tmp_path / "adapter").eval()  # the plain peft way
    torch.testing.assert_close(reloaded(input_ids=x).logits, expected, rtol=0, atol=0)
    ours = load_adapter(tiny_llama(seed=3), tmp_path / "adapter").eval()
    torch.testing.assert_close(ours(input_ids=x).logits, expected, rtol=0, atol=0)
    merged = merge_lora(ours)
    assert not isinstance(merged, PeftModel) and not any("lora_" in n for n, _ in merged.named_parameters())
    torch.testing.assert_close(merged(input_ids=x).logits, expected, rtol=1e-5, atol=1e-5)


def test_a_few_steps_lower_the_answer_loss():
    tok = tiny_tokenizer()
    # init 0.3: with the default 0.02 the frozen lm_head caps every logit near 0.1 (loss >= ~4.3)
    model = add_lora(tiny_llama(vocab_size=len(tok), init=0.3), GeneratorConfig(
        lora_r=8, lora_alpha=16, lora_dropout=0.0,
        target_modules=("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")))
    records = [InstructRecord(f"Claim : {t} w{i}", (f"{t} study", "galaxy data"), "[ 1 ]" if i % 2 else "[ 2 ]")
               for i, t in enumerate(TOPICS[:6])]
    batch = collate_left([encode_record(tok, r) for r in records], tok.pad_token_id)

    def loss():
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                       logits_to_keep=batch["keep"]).logits
        return answer_loss(logits, batch["labels"])

    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=3e-2)
    model.train()
    start = loss().item()
    for _ in range(30):
        value = loss()
        value.backward()
        opt.step()
        opt.zero_grad()
    assert loss().item() < 0.5 * start


def test_logits_to_keep_loss_equals_full_logits_loss():
    """Computing logits for the last `keep` positions only loses no answer token."""
    tok = tiny_tokenizer()
    model = tiny_llama(vocab_size=len(tok))
    records = [InstructRecord("Claim : protein", ("a", "b"), "[ 2 ]"),
               InstructRecord("Claim : galaxy river engine data", ("a",), "Information not available")]
    batch = collate_left([encode_record(tok, r) for r in records], tok.pad_token_id)
    full = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    kept = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                 logits_to_keep=batch["keep"]).logits
    torch.testing.assert_close(answer_loss(kept, batch["labels"]), answer_loss(full, batch["labels"]))


CONFIG = """
from ragtune.config import *

def get_config():
    return ExperimentConfig(
        task="generator", output_dir={out!r}, seed=3,
        data=DataConfig(dataset="tiny", data_root={root!r}, dev_fraction=0.2),
        generator=GeneratorConfig(name={model!r}, lora_r=4, lora_alpha=8, k_passages=3, passage_tokens=6,
                                  no_gold_share=0.3, max_new_tokens=6, dev_max_examples=4, eval_max_examples=6,
                                  eval_batch_size=4, merge=True, calibrate_abstention=True),
        optim=OptimConfig(lr=1e-2, warmup_ratio=0.0),
        train=TrainConfig(epochs=1, batch_size=4, metric_for_best="exact_match"),
        log=LogConfig(wandb="disabled", log_every=1),
    )
"""


def test_generator_task_end_to_end(tmp_path, subprocess_env, tiny_data_root):
    model_dir = write_tiny_llama(tmp_path / "tiny_llama")
    out = tmp_path / "run"
    cfg = tmp_path / "config.py"
    cfg.write_text(CONFIG.format(out=str(out), root=str(tiny_data_root), model=str(model_dir)))
    proc = subprocess.run([sys.executable, str(REPO / "experiments" / "run.py"), "--config", str(cfg)],
                          env=subprocess_env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads((out / "results.json").read_text())
    for stage in ("baseline", "final"):
        for metric in ("citation_accuracy", "abstention_precision", "abstention_recall", "exact_match"):
            assert 0.0 <= results[f"{stage}/test/{metric}"] <= 1.0
            assert 0.0 <= results[f"{stage}/test/calibrated_{metric}"] <= 1.0
        assert 0.0 <= results[f"{stage}/test/abstain_auc"] <= 1.0
    # the bias was chosen on all 6 dev claims; test predictions keep both answers and the margin
    assert len((out / "calibration_records.jsonl").read_text().splitlines()) == 6
    last_test = sorted((out / "predictions").glob("*-test.jsonl"))[-1]
    final = [json.loads(line) for line in last_test.read_text().splitlines()]
    bias = results["final/test/abstain_bias"]
    for r in final:  # the bias changes an answer only where it moves the margin across 0
        if (r["margin"] > 0) == (r["margin"] + bias > 0):
            assert r["calibrated"] == r["output"]
        else:
            assert r["calibrated"].startswith("Information") != r["output"].startswith("Information")
    records = [json.loads(line) for line in (out / "train_records.jsonl").read_text().splitlines()]
    assert len(records) == 24 and all(len(r["contexts"]) == 3 for r in records)  # 30 train claims - 6 dev
    assert len((out / "test_records.jsonl").read_text().splitlines()) == 6
    # the exported adapter reloads the peft way and reproduces the merged model's logits
    from transformers import AutoModelForCausalLM

    reloaded = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(model_dir), out / "model").eval()
    merged = AutoModelForCausalLM.from_pretrained(out / "merged").eval()
    x = torch.randint(0, 100, (2, 8))
    torch.testing.assert_close(reloaded(input_ids=x).logits, merged(input_ids=x).logits, rtol=1e-5, atol=1e-5)


@pytest.mark.slow
def test_real_smollm2_adapter_reloads_with_identical_logits(tmp_path):
    """SmolLM2-135M (needs the packaged model): save an adapter, reload it with peft, same logits."""
    from ragtune.models.generator import load_generator

    model, tok = load_generator("smollm2")
    model = add_lora(model, GeneratorConfig(lora_layers=4)).eval()
    _randomize_lora(model)
    x = tok(["Claim: aspirin lowers the risk of stroke. [1] [2]"], return_tensors="pt")["input_ids"]
    with torch.inference_mode():
        expected = model(input_ids=x).logits
    save_adapter(model, tmp_path / "adapter")
    reloaded = PeftModel.from_pretrained(load_generator("smollm2")[0], tmp_path / "adapter").eval()
    with torch.inference_mode():
        torch.testing.assert_close(reloaded(input_ids=x).logits, expected, rtol=0, atol=0)


@pytest.mark.parametrize("negatives", ["bm25", "dense"])
def test_first_stage_candidates_exclude_positives(negatives, tiny_data_root, tiny_model_dir):
    from ragtune.config import DataConfig, ExperimentConfig, ModelConfig
    from ragtune.data.beir import load_beir
    from ragtune.tasks.generator import first_stage

    cfg = ExperimentConfig(model=ModelConfig(name=str(tiny_model_dir)), data=DataConfig(data_root=str(tiny_data_root)),
                           generator=GeneratorConfig(negatives=negatives))
    train, test = (load_beir("tiny", s, str(tiny_data_root)) for s in ("train", "test"))
    run = first_stage(cfg, train, test, depth=5)
    assert set(run) == set(train.queries) | set(test.queries)
    for qid, docs in run.items():
        assert 0 < len(docs) <= 5 and not set(docs) & set({**train.qrels, **test.qrels}[qid])
        scores = list(docs.values())
        assert scores == sorted(scores, reverse=True)


def test_pad_token_id_falls_back_to_eos_only_when_there_is_no_pad_token():
    from types import SimpleNamespace

    from ragtune.models.generator import pad_token_id

    assert pad_token_id(SimpleNamespace(pad_token_id=None, eos_token_id=2)) == 2
    assert pad_token_id(SimpleNamespace(pad_token_id=0, eos_token_id=2)) == 0  # id 0 is a real pad token


def test_both_ways_rebuild_greedy_decoding_under_any_abstention_bias():
    """ragtune/generation/grounded.py's claim: the answer with abstaining barred, the one forced to abstain and
    the first-token margin give exactly what greedy decoding with a bias on that token gives."""
    import numpy as np

    from ragtune.generation.grounded import calibrated_answers
    from ragtune.tasks.generator import abstain_margins, abstain_token_id, both_ways, greedy_answers

    tok = tiny_tokenizer()
    model = tiny_llama(vocab_size=len(tok), init=0.3)
    g = GeneratorConfig(max_new_tokens=4, eval_batch_size=3, system_prompt="")
    records = [InstructRecord(f"Claim : {t} w{i}", (f"{t} study w{i + 3}", "galaxy data", TOPICS[i + 1]), "[ 1 ]")
               for i, t in enumerate(TOPICS[:7])]
    cite, abstain, margins = both_ways(model, tok, records, g, show_progress=False)
    assert all(a.startswith("Information") for a in abstain) and not any(c.startswith("Information") for c in cite)
    for bias in (0.0, float(-np.median(margins)) + 1e-3, float(-margins.min()) + 0.01):  # no exact ties
        biased = greedy_answers(model, tok, records, g, show_progress=False, abstain_bias=bias)
        assert calibrated_answers(cite, abstain, margins, bias) == biased
    # a margin by hand: one unpadded forward, the abstention token's logit minus the best other one
    ids = prompt_ids(tok, records[2], "", INSTRUCTION)
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([ids])).logits[0, -1]
    token = abstain_token_id(tok)
    others = torch.cat([logits[:token], logits[token + 1:]])
    assert abs(margins[2] - float(logits[token] - others.max())) < 1e-4
    assert abstain_margins(model, tok, records[2:3], g)[0] == margins[2]
