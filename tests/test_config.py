import json

import pytest

from ragtune.config import (
    ConfigError,
    ExperimentConfig,
    apply_overrides,
    config_from_dict,
    flatten,
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
