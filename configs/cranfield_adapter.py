"""The shipped SciFact adapter recipe (configs/scifact_adapter.py) carried to Cranfield unchanged.

Cranfield has one labelled split (test, graded 1-4), so the recipe is measured by 5-fold
cross-validation over its queries: `ragtune cv --config configs/cranfield_adapter.py`
(this file alone runs fold 0). Each fold trains on 4/5 of the queries, with its dev hold-out
taken from them, and is tested on the other 1/5. Measured numbers: README (Results).
"""

from pathlib import Path

from ragtune.config import ExperimentConfig, apply_overrides, load_config_file


def get_config() -> ExperimentConfig:
    recipe = load_config_file(Path(__file__).with_name("scifact_adapter.py"))
    return apply_overrides(recipe, {"output_dir": "runs/cranfield_adapter", "data.dataset": "cranfield",
                                    "data.cv_folds": 5})
