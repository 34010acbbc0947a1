"""The shipped SciFact adapter recipe (configs/scifact_adapter.py) carried to Cranfield unchanged.

Cranfield has one labelled split (test, graded 1-4), so the recipe is measured by 5-fold
cross-validation over its queries: `ragtune cv --config configs/cranfield_adapter.py --inner-folds 5`
(this file alone runs fold 0). Each fold trains on 4/5 of the queries and is tested on the other
1/5. A 10% dev hold-out of 180 train queries is 18 queries, too few to choose a checkpoint on, so
`--inner-folds 5` chooses each fold's training length by 5 inner folds of its train queries and
then trains on all of them (ragtune/sweep/inner_cv.py). Measured numbers: README (Results).
"""

from pathlib import Path

from ragtune.config import ExperimentConfig, apply_overrides, load_config_file


def get_config() -> ExperimentConfig:
    recipe = load_config_file(Path(__file__).with_name("scifact_adapter.py"))
    return apply_overrides(recipe, {"output_dir": "runs/cranfield_adapter", "data.dataset": "cranfield",
                                    "data.cv_folds": 5})
