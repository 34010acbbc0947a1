"""Generator LoRA + instruction tuning on the grounded SciFact task (ragtune/generation/grounded.py).

Train records are written from train claims to <output_dir>/train_records.jsonl (or read from
data.train_file) and go through the records reader; dev = grounded examples of held-out train
claims; the eval split (test) is a fixed seeded subset of its claims. The loss is next-token
cross-entropy on answer tokens only. evaluate = greedy batched generation (left padding) ->
citation accuracy / abstention precision and recall. The LoRA starts at B = 0, so the
`baseline/` rows are exactly the base model; `final/` rows are base + LoRA.
export = the adapter, the peft way, in <output_dir>/model (and the merged model when generator.merge).
"""

from __future__ import annotations

import itertools
import json
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm.auto import tqdm
from transformers import LogitsProcessor, LogitsProcessorList

from ragtune.config import ConfigError, config_from_dict
from ragtune.data.beir import BeirDataset
from ragtune.data.folds import load_split
from ragtune.data.instruct import (
    LengthBucketSampler,
    answer_loss,
    collate_left,
    encode_record,
    load_instruct_records,
    prompt_ids,
    write_instruct_records,
)
from ragtune.data.pairs import split_queries
from ragtune.generation.grounded import (
    ABSTAIN,
    INSTRUCTION,
    GroundedExample,
    auc,
    build_examples,
    calibrated_answers,
    choose_abstain_bias,
    grounded_metrics,
)
from ragtune.models.encoder import Encoder
from ragtune.models.generator import (
    add_lora,
    load_generator,
    merge_lora,
    pad_token_id,
    save_adapter,
    trainable_parameters,
)
from ragtune.retrieval.first_stage import KINDS as FIRST_STAGES
from ragtune.retrieval.first_stage import first_stage_run
from ragtune.tasks import Task


def first_stage(cfg, train: BeirDataset, test: BeirDataset, depth: int | None = None) -> dict[str, dict[str, float]]:
    """Top-`depth` non-gold candidates per claim of both splits, from ragtune/retrieval/first_stage.py
    (generator.negatives: bm25 | dense | hybrid; dense uses model.name and the embedding cache).
    depth defaults to what build_examples draws from: max(negatives_depth, k_passages)."""
    kind = cfg.generator.negatives
    depth = depth or max(cfg.generator.negatives_depth, cfg.generator.k_passages)
    if kind not in FIRST_STAGES:
        raise ConfigError(f"generator.negatives='{kind}': choose one of {FIRST_STAGES}")
    encoder = Encoder.from_config(cfg.model) if kind != "bm25" else None
    candidates = {}
    for dataset in (train, test):
        most_gold = max(map(len, dataset.qrels.values()), default=0)  # so `depth` remain after dropping gold
        run, _ = first_stage_run(kind, dataset, cfg, encoder=encoder, top_k=depth + most_gold, show_progress=False)
        for qid, docs in run.items():
            candidates[qid] = dict([(d, s) for d, s in docs.items() if d not in dataset.qrels[qid]][:depth])
    return candidates


def finished_run(run_dir: Path, *extra: str):
    """(config, test_records.jsonl path) of a finished generator run folder; a clear error otherwise.
    `extra`: more files the caller needs, relative to the folder."""
    needed = [run_dir / "config.json", run_dir / "test_records.jsonl", run_dir / "model" / "adapter_config.json",
              *(run_dir / e for e in extra)]
    missing = [str(p) for p in needed if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"{run_dir} is not a finished generator run: missing {', '.join(missing)}")
    cfg = config_from_dict(json.loads(needed[0].read_text()))
    if cfg.task != "generator":
        raise ConfigError(f"{needed[0]}: task '{cfg.task}', not a generator run")
    return cfg, needed[1]


def example_settings(cfg) -> dict:
    """The build_examples keyword arguments every split shares (ragtune/generation/grounded.py), from the config."""
    g = cfg.generator
    return dict(k=g.k_passages, passage_tokens=g.passage_tokens, no_gold_share=g.no_gold_share, seed=cfg.seed,
                max_gold=g.max_gold, negatives_depth=g.negatives_depth)


def abstain_token_id(tokenizer) -> int:
    """The first token of the abstention sentence as an answer (what greedy decoding picks to abstain)."""
    return tokenizer(ABSTAIN, add_special_tokens=False)["input_ids"][0]


class FirstTokenBias(LogitsProcessor):
    """Adds `bias` to one token's score at the first generated position only (prompts padded to `start`)."""

    def __init__(self, token_id: int, bias: float, start: int):
        self.token_id, self.bias, self.start = token_id, bias, start

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        if input_ids.shape[1] == self.start:
            scores[:, self.token_id] += self.bias
        return scores


@torch.inference_mode()
def abstain_margins(model, tokenizer, records: list, g) -> np.ndarray:
    """(N,) logit of the abstention's first token minus the best other logit, at the first answer
    position: greedy decoding abstains exactly where this is > 0 (ragtune/generation/grounded.py)."""
    pad_id, token = pad_token_id(tokenizer), abstain_token_id(tokenizer)
    was_training = model.training
    model.eval()
    prompts = [prompt_ids(tokenizer, r, g.system_prompt, INSTRUCTION, g.query_first) for r in records]
    margins = np.empty(len(prompts), dtype=np.float64)
    device = next(model.parameters()).device
    for s in range(0, len(prompts), g.eval_batch_size):
        idx = list(range(s, min(s + g.eval_batch_size, len(prompts))))
        batch = collate_left([(prompts[i], prompts[i]) for i in idx], pad_id)
        logits = model(input_ids=batch["input_ids"].to(device), attention_mask=batch["attention_mask"].to(device),
                       logits_to_keep=1).logits[:, -1].float().cpu()  # (B, V)
        chosen = logits[:, token].clone()
        logits[:, token] = float("-inf")
        margins[idx] = (chosen - logits.max(dim=1).values).numpy()
    model.train(was_training)
    return margins


@torch.inference_mode()
def greedy_answers(model, tokenizer, records: list, g, desc: str = "generate", show_progress: bool = True,
                   abstain_bias: float = 0.0) -> list[str]:
    """Greedy answers to instruct records, batched by prompt length with left padding; input order kept.

    `g` is the GeneratorConfig (prompt settings, batch size, max_new_tokens). The evaluation and
    ragtune/commands/verify_lora_reload.py both call this, so a reload check replays the same batches.
    abstain_bias is added to the abstention sentence's first token at the first answer position
    (ragtune/generation/grounded.py: +-1e4 forces or bars abstaining).
    """
    pad_id = pad_token_id(tokenizer)
    end_id = tokenizer.convert_tokens_to_ids("<|im_end|>") if "<|im_end|>" in tokenizer.get_vocab() \
        else tokenizer.eos_token_id
    was_training = model.training
    model.eval()
    prompts = [prompt_ids(tokenizer, r, g.system_prompt, INSTRUCTION, g.query_first) for r in records]
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
    outputs = [""] * len(prompts)
    device = next(model.parameters()).device
    for s in tqdm(range(0, len(order), g.eval_batch_size), desc=desc, disable=not show_progress):
        idx = order[s:s + g.eval_batch_size]
        batch = collate_left([(prompts[i], prompts[i]) for i in idx], pad_id)
        length = batch["input_ids"].shape[1]
        bias = LogitsProcessorList([FirstTokenBias(abstain_token_id(tokenizer), abstain_bias, length)] if abstain_bias
                                   else [])
        new = model.generate(input_ids=batch["input_ids"].to(device), attention_mask=batch["attention_mask"].to(device),
                             max_new_tokens=g.max_new_tokens, do_sample=False, eos_token_id=end_id,
                             pad_token_id=pad_id, logits_processor=bias)[:, length:]  # (B, new)
        for i, row in zip(idx, new.tolist(), strict=True):
            outputs[i] = tokenizer.decode(row, skip_special_tokens=True)
    model.train(was_training)
    return outputs


def both_ways(model, tokenizer, records: list, g, desc: str = "generate", show_progress: bool = True):
    """(answers with abstaining barred, answers forced to abstain, first-token margins): together
    the greedy answer under any abstention bias (ragtune/generation/grounded.py calibrated_answers)."""
    return (greedy_answers(model, tokenizer, records, g, f"{desc}, cite", show_progress, abstain_bias=-1e4),
            greedy_answers(model, tokenizer, records, g, f"{desc}, abstain", show_progress, abstain_bias=1e4),
            abstain_margins(model, tokenizer, records, g))


def build(cfg, accelerator) -> Task:
    g = cfg.generator
    train = load_split(cfg, "train")
    test = load_split(cfg, "eval")
    base, tokenizer = load_generator(g.name, cfg.eval.cache_dir or None)
    model = add_lora(base, g).to(accelerator.device)
    pad_id = pad_token_id(tokenizer)
    out = Path(cfg.output_dir)

    candidates = first_stage(cfg, train, test)
    split = split_queries(list(train.qrels), cfg.data.dev_fraction, cfg.seed)
    common = example_settings(cfg)
    examples: dict[str, list[GroundedExample]] = {
        "dev": build_examples(train, candidates, tokenizer, qids=sorted(split.dev_qids),
                              max_examples=g.dev_max_examples, **common),
        test.split: build_examples(test, candidates, tokenizer, max_examples=g.eval_max_examples, **common),
    }
    if g.calibrate_abstention:  # every dev claim: the abstention bias is one number, but a noisy one
        examples["calibration"] = build_examples(train, candidates, tokenizer, qids=sorted(split.dev_qids), **common)
    if cfg.data.train_file:
        records = load_instruct_records(cfg.data.train_file)
    else:
        train_examples = build_examples(train, candidates, tokenizer, qids=sorted(split.train_qids),
                                        max_examples=g.train_max_examples, paired=g.train_paired, **common)
        records = load_instruct_records(write_instruct_records([e.record() for e in train_examples],
                                                               out / "train_records.jsonl"))
    for name, exs in examples.items():  # the exact evaluation inputs, kept with the run
        write_instruct_records([e.record() for e in exs], out / f"{name}_records.jsonl")

    encoded = [encode_record(tokenizer, r, g.system_prompt, INSTRUCTION, g.max_length, g.query_first) for r in records]
    sampler = LengthBucketSampler([len(ids) for ids, _ in encoded], cfg.train.batch_size, cfg.seed, g.bucket_size)
    loader = DataLoader(encoded, batch_sampler=sampler, collate_fn=lambda b: collate_left(b, pad_id))
    timings: dict[str, float] = {"train_tokens": 0, "train_answer_tokens": 0}

    def step_fn(model, batch):
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                       logits_to_keep=batch["keep"]).logits  # (B, keep, V): only answer positions
        loss = answer_loss(logits, batch["labels"])
        answer_tokens = int((batch["labels"] != -100).sum())
        timings["train_tokens"] += int(batch["attention_mask"].sum())
        timings["train_answer_tokens"] += answer_tokens
        return loss, {"answer_tokens": answer_tokens, "seq_len": batch["input_ids"].shape[1]}

    evaluation_number = itertools.count(1)  # names each evaluation's predictions file

    def evaluate(model, split_name: str) -> dict[str, float]:
        exs = examples[split_name]
        start = time.perf_counter()
        extra, rows = {}, [{} for _ in exs]
        records = [e.record() for e in exs]
        show = accelerator.is_main_process
        if g.calibrate_abstention and split_name != "dev":
            # the bias is chosen for this model on all dev claims, then applied to the test answers
            cal = examples["calibration"]
            cal_answers = both_ways(model, tokenizer, [e.record() for e in cal], g, "calibrate", show)
            bias = choose_abstain_bias(cal, *cal_answers)
            cite, abstain, margins = both_ways(model, tokenizer, records, g, f"generate {split_name}", show)
            outputs = calibrated_answers(cite, abstain, margins, 0.0)  # = plain greedy decoding
            calibrated = calibrated_answers(cite, abstain, margins, bias)
            extra = {f"calibrated_{k}": v for k, v in grounded_metrics(exs, calibrated).items()}
            extra["abstain_bias"] = bias
            rows = [{"calibrated": c} for c in calibrated]
        else:
            outputs = greedy_answers(model, tokenizer, records, g, desc=f"generate {split_name}", show_progress=show)
            if split_name != "dev":
                margins = abstain_margins(model, tokenizer, records, g)  # one forward per example
        if split_name != "dev":  # how well the first-token margin alone tells no-gold claims apart
            no_gold = np.array([not e.gold for e in exs])
            if 0 < no_gold.sum() < len(exs):  # undefined with one class (no_gold_share 0 or 1)
                extra["abstain_auc"] = auc(margins[no_gold], margins[~no_gold])
            rows = [{**row, "margin": float(m)} for row, m in zip(rows, margins, strict=True)]
        seconds = time.perf_counter() - start
        n = next(evaluation_number)
        if accelerator.is_main_process:  # every evaluation's answers, for inspection
            pred_dir = out / "predictions"
            pred_dir.mkdir(parents=True, exist_ok=True)
            (pred_dir / f"{n:02d}-{split_name}.jsonl").write_text("".join(
                json.dumps({"qid": e.qid, "target": e.target, "output": o, **row}) + "\n"
                for e, o, row in zip(exs, outputs, rows, strict=True)))
        if split_name != "dev":
            timings[f"generate_{split_name}_seconds_{n:02d}"] = seconds
            timings[f"generate_{split_name}_examples"] = len(exs)
        return {**grounded_metrics(exs, outputs), **extra}

    def export(model, path: Path) -> None:
        save_adapter(model, path)
        tokenizer.save_pretrained(path)
        if g.merge:
            merged = merge_lora(model)
            merged.save_pretrained(path.parent / "merged")
            tokenizer.save_pretrained(path.parent / "merged")

    trainable, total = trainable_parameters(model)
    timings.update(trainable_params=trainable, total_params=total)
    if accelerator.is_main_process:
        n_abstain = sum(r.answer == ABSTAIN for r in records)
        lengths = sorted(len(ids) for ids, _ in encoded)
        print(f"train records {len(records)} ({n_abstain} abstain), dev {len(examples['dev'])}, "
              f"{test.split} {len(examples[test.split])}; tokens/record median {lengths[len(lengths) // 2]} "
              f"max {lengths[-1]}; LoRA trains {trainable:,} of {total:,} params; {len(sampler)} batches/epoch")
    return Task(model=model, evaluate=evaluate, eval_splits=[test.split], train_loader=loader, step_fn=step_fn,
                export=export, timings=timings)
