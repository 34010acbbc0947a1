"""The shipped SciFact bi-encoder recipe (configs/scifact_biencoder.py) carried to Cranfield unchanged.

Measured by 5-fold cross-validation over Cranfield's queries (its only labelled split):
`ragtune cv --config configs/cranfield_biencoder.py` (this file alone runs fold 0).
Cranfield's queries have several graded positives each, so data.sampling=auto trains per query.
Measured numbers: README (Results).
"""

from pathlib import Path

from ragtune.config import ExperimentConfig, apply_overrides, load_config_file


def get_config() -> ExperimentConfig:
    recipe = load_config_file(Path(__file__).with_name("scifact_biencoder.py"))
    return apply_overrides(recipe, {"output_dir": "runs/cranfield_biencoder", "data.dataset": "cranfield",
                                    "data.cv_folds": 5})
