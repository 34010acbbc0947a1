import json

import pytest

from ragtune.config import (
    ConfigError,
    ExperimentConfig,
    apply_overrides,
    config_from_dict,
    flatten,
    load_config,
    load_config_file,
    parse_cli_overrides,
    save_config,
)


def test_cli_overrides_are_parsed_and_typed():
    overrides = parse_cli_overrides(["--optim.lr=3e-5", "--train.epochs", "2", "--model.normalize=false",
                                     "--eval.k_values=1,5", "--output_dir=runs/x"])
    cfg = apply_overrides(ExperimentConfig(), overrides)
    assert cfg.optim.lr == 3e-5 and cfg.train.epochs == 2 and cfg.model.normalize is False
    assert cfg.eval.k_values == (1, 5) and cfg.output_dir == "runs/x"
    assert ExperimentConfig().optim.lr == 2e-5  # frozen defaults untouched


def test_unknown_key_names_the_closest_valid_key():
    with pytest.raises(ConfigError, match=r"unknown config key 'optim.lrr'; did you mean 'optim.lr'\?"):
        apply_overrides(ExperimentConfig(), {"optim.lrr": "1e-3"})
    with pytest.raises(ConfigError, match="did you mean 'train.batch_size'"):
        apply_overrides(ExperimentConfig(), {"train.batchsize": "4"})


@pytest.mark.parametrize("key,value,expected", [
    ("optim.lr", "fast", "expected float, got 'fast'"),
    ("train.epochs", "2.5", "expected int, got '2.5'"),
    ("model.normalize", "maybe", "expected bool, got 'maybe'"),
    ("train.epochs", True, "expected int, got True"),
])
def test_wrong_type_names_key_type_and_value(key, value, expected):
    with pytest.raises(ConfigError) as err:
        apply_overrides(ExperimentConfig(), {key: value})
    assert f"--{key}" in str(err.value) and expected in str(err.value)


def test_cli_syntax_errors():
    with pytest.raises(ConfigError, match="missing value"):
        parse_cli_overrides(["--optim.lr"])
    with pytest.raises(ConfigError, match="unexpected argument"):
        parse_cli_overrides(["optim.lr=1"])


def test_config_file_and_json_round_trip(tmp_path):
    path = tmp_path / "c.py"
    path.write_text("from ragtune.config import *\n"
                    "def get_config():\n    return ExperimentConfig(task='biencoder', train=TrainConfig(epochs=5))\n")
    cfg = load_config_file(path)
    assert cfg.task == "biencoder" and cfg.train.epochs == 5
    save_config(cfg, tmp_path / "config.json")
    assert config_from_dict(json.loads((tmp_path / "config.json").read_text())) == cfg
    assert config_from_dict(flatten(cfg)) == cfg


def test_config_file_errors(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_config_file(tmp_path / "missing.py")
    bad = tmp_path / "bad.py"
    bad.write_text("x = 1\n")
    with pytest.raises(ConfigError, match="defines no get_config"):
        load_config_file(bad)


@pytest.mark.parametrize("key,value,expected", [
    ("train.batch_size", "0", "--train.batch_size: must be >= 1, got 0"),
    ("train.batch_size", "-1", "--train.batch_size: must be >= 1, got -1"),
    ("train.grad_accum", "0", "--train.grad_accum: must be >= 1, got 0"),
    ("data.dev_fraction", "1.5", "--data.dev_fraction: must be in [0.0, 1.0], got 1.5"),
    ("data.num_negatives", "-1", "--data.num_negatives: must be >= 0, got -1"),
    ("optim.lr", "-1", "--optim.lr: must be > 0.0, got -1.0"),
    ("eval.k_values", "0", "--eval.k_values: every value must be >= 1, got (0,)"),
    ("train.mixed_precision", "fp8", "--train.mixed_precision: expected one of ['no', 'bf16', 'fp16'], got 'fp8'"),
    ("log.wandb", "foo", "--log.wandb: expected one of ['offline', 'online', 'disabled'], got 'foo'"),
    ("optim.schedule", "cosin", "--optim.schedule: expected one of ['linear', 'cosine', 'constant'], got 'cosin'; "
                                "did you mean 'cosine'?"),
    ("mining.rank_start", "60", "--mining.rank_start: must be < mining.rank_end (50), got 60"),
    ("eval.k_values", "1,10,1000", "--eval.k_values: @1000 needs eval.top_k >= 1000 (retrieved depth), got top_k=100"),
])
def test_bad_values_are_refused_when_parsed_naming_key_rule_and_value(key, value, expected):
    with pytest.raises(ConfigError) as err:
        apply_overrides(ExperimentConfig(), {key: value})
    assert str(err.value) == expected


def test_a_bad_value_in_a_config_file_names_the_file_and_line(tmp_path):
    path = tmp_path / "c.py"
    path.write_text("from ragtune.config import *\n\n"
                    "def get_config():\n"
                    "    return ExperimentConfig(\n"
                    "        optim=OptimConfig(lr=-1e-3),  # a typo'd sign\n"
                    "        model=ModelConfig(pooling='avg'))\n")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert str(err.value) == f"{path}:6: model.pooling: expected one of ['cls', 'mean', 'max', 'last'], got 'avg'"
    with pytest.raises(ConfigError) as err:  # fixed on the command line, the next bad value shows
        load_config(path, {"model.pooling": "mean"})
    assert str(err.value) == f"{path}:5: optim.lr: must be > 0.0, got -0.001"
    assert load_config(path, {"optim.lr": "1e-3", "model.pooling": "cls"}).model.pooling == "cls"


def test_every_shipped_config_is_valid():
    from tests.conftest import REPO

    for path in sorted((REPO / "configs").glob("*.py")):
        load_config(path)


def test_a_renamed_key_loads_from_a_saved_config_and_is_refused_as_an_override():
    from ragtune.config import ConfigError, ExperimentConfig, apply_overrides, config_from_dict

    cfg = config_from_dict({"hybrid.bm25_k1": 0.9, "hybrid.bm25_b": 0.4})  # a config.json from before the move
    assert (cfg.bm25.k1, cfg.bm25.b) == (0.9, 0.4)
    with pytest.raises(ConfigError, match="config key 'hybrid.bm25_k1' is now 'bm25.k1'"):
        apply_overrides(ExperimentConfig(), {"hybrid.bm25_k1": "0.9"})


def test_late_interaction_with_a_distance_loss_is_refused_at_parse_time():
    cfg = ExperimentConfig(task="late_interaction")
    with pytest.raises(ConfigError, match="--loss.name: 'triplet' measures distances between single vectors"):
        apply_overrides(cfg, {"loss.name": "triplet"})
    apply_overrides(cfg, {"loss.name": "margin_mse"})  # a score loss is fine
    with pytest.raises(ConfigError, match="--late.dim: must be >= 1"):
        apply_overrides(cfg, {"late.dim": "0"})
    with pytest.raises(ConfigError, match="rerank.first_stage_model: late.rerank_first_stage='hybrid' needs the dense"):
        apply_overrides(cfg, {"task": "late_eval"})
    apply_overrides(cfg, {"task": "late_eval", "late.rerank_first_stage": "bm25"})  # BM25 needs no encoder
