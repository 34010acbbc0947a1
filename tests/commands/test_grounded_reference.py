from __future__ import annotations

import numpy as np


def test_a_folder_that_is_not_a_finished_generator_run_exits_2_with_what_is_missing(tmp_path, capsys):
    from ragtune.commands.grounded_reference import main

    assert main(["--run", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {tmp_path} is not a finished generator run: missing {tmp_path}/config.json")
    assert "adapter_config.json" in err


def test_a_finished_run_of_another_task_is_refused(tmp_path, capsys):
    import json

    from ragtune.commands.grounded_reference import main
    from ragtune.config import ExperimentConfig, save_config

    save_config(ExperimentConfig(task="biencoder"), tmp_path / "config.json")
    (tmp_path / "test_records.jsonl").write_text("")
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "adapter_config.json").write_text(json.dumps({}))
    assert main(["--run", str(tmp_path)]) == 2
    assert "task 'biencoder', not a generator run" in capsys.readouterr().err
    assert main(["--run", str(tmp_path), "--generator.k_passages=3"]) == 2  # a run's prompts are its own
    assert "--run reads the run's own config" in capsys.readouterr().err


def test_qlm_scores_are_claim_pmi_under_the_base_generator(tmp_path):
    """Each score = mean log p(claim | passage prompt) - the same with an empty passage, computed
    here by one unpadded forward per pair."""
    import torch

    from ragtune.commands.grounded_reference import qlm_scores
    from ragtune.config import ExperimentConfig, GeneratorConfig
    from ragtune.generation.grounded import GroundedExample
    from ragtune.models.qlm_reranker import PROMPT
    from tests.models.test_generator import write_tiny_llama

    model_dir = write_tiny_llama(tmp_path / "llama")
    cfg = ExperimentConfig(generator=GeneratorConfig(name=str(model_dir), k_passages=2, passage_tokens=20))
    examples = [GroundedExample("q1", "alpha claim w1", ("alpha filler w1", "beta w3"), ("d1", "d3"), (1,)),
                GroundedExample("q2", "beta claim", ("gamma w2 w5", "beta beta"), ("d2", "d4"), ())]
    scores = qlm_scores(cfg, examples)

    from transformers import AutoModelForCausalLM, AutoTokenizer
    model, tok = AutoModelForCausalLM.from_pretrained(model_dir).eval(), AutoTokenizer.from_pretrained(model_dir)

    def mean_logp(claim: str, passage: str) -> float:
        prompt = tok(PROMPT.format(doc=passage), add_special_tokens=False)["input_ids"]
        query = tok(" " + claim, add_special_tokens=False)["input_ids"]
        with torch.no_grad():
            logp = model(input_ids=torch.tensor([prompt + query])).logits[0].log_softmax(-1)
        return float(sum(logp[len(prompt) + i - 1, t] for i, t in enumerate(query)) / len(query))

    expected = np.array([[mean_logp(e.claim, p) - mean_logp(e.claim, "") for p in e.passages] for e in examples])
    np.testing.assert_allclose(scores, expected, rtol=1e-4, atol=1e-5)
