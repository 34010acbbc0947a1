"""Reload the run's exported adapter with peft.PeftModel.from_pretrained and check it reproduces the
run's final greedy test outputs (same batches), and that merging gives the same logits.

    python experiments/verify_lora_reload.py runs/scifact_grounded_lora 1   # <run dir> <test batches>
"""

import json
import sys
import time
from pathlib import Path

import torch
from peft import PeftModel

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from anywhere
from ragtune.data.instruct import collate_left, load_instruct_records, prompt_ids
from ragtune.grounded import INSTRUCTION
from ragtune.models.generator import load_generator, merge_lora

run = Path(sys.argv[1])
n_batches = int(sys.argv[2])
cfg = json.loads((run / "config.json").read_text())["generator"]
base, tok = load_generator(cfg["name"])
model = PeftModel.from_pretrained(base, run / "model").eval()
records = load_instruct_records(run / "test_records.jsonl")
final = sorted((run / "predictions").glob("*-test.jsonl"))[-1]
expected = [json.loads(line)["output"] for line in final.read_text().splitlines()]
prompts = [prompt_ids(tok, r, cfg["system_prompt"], INSTRUCTION, cfg.get("query_first", False)) for r in records]
order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
end_id = tok.convert_tokens_to_ids("<|im_end|>")
pad = tok.pad_token_id
same = total = 0
t = time.perf_counter()
with torch.inference_mode():
    for s in range(0, n_batches * cfg["eval_batch_size"], cfg["eval_batch_size"]):
        idx = order[s : s + cfg["eval_batch_size"]]
        b = collate_left([(prompts[i], prompts[i]) for i in idx], pad)
        new = model.generate(
            input_ids=b["input_ids"],
            attention_mask=b["attention_mask"],
            max_new_tokens=cfg["max_new_tokens"],
            do_sample=False,
            eos_token_id=end_id,
            pad_token_id=pad,
        )[:, b["input_ids"].shape[1] :]
        for i, row in zip(idx, new.tolist(), strict=True):
            out = tok.decode(row, skip_special_tokens=True)
            same += out == expected[i]
            total += 1
    print(
        f"reloaded adapter reproduces {same}/{total} final test outputs of {final.name} "
        f"({time.perf_counter() - t:.0f}s)"
    )
    b = collate_left([(prompts[i], prompts[i]) for i in order[:4]], pad)
    peft_logits = model(input_ids=b["input_ids"], attention_mask=b["attention_mask"]).logits
    merged = merge_lora(model)
    merged_logits = merged(input_ids=b["input_ids"], attention_mask=b["attention_mask"]).logits
    m = b["attention_mask"].bool()
    print("max |peft - merged| logit diff over real tokens:", (peft_logits - merged_logits)[m].abs().max().item())
