"""Training: the three model types, params pass-through, determinism, bad config."""

from __future__ import annotations

import numpy as np
import pytest

from mlops.config import Config
from mlops.data import generate_synthetic_data, split_xy
from mlops.errors import ConfigError
from mlops.training import evaluate, train_model


@pytest.fixture(scope="module")
def xy():  # type: ignore[no-untyped-def]
    return split_xy(generate_synthetic_data(400, 4, 0), "target")


@pytest.mark.parametrize("model_type", ["logistic", "random_forest", "gradient_boosting"])
def test_model_types_are_deterministic(xy, model_type: str) -> None:  # type: ignore[no-untyped-def]
    x, y = xy
    cfg = Config.from_dict({"training": {"model_type": model_type}})
    a, b = train_model(x, y, cfg), train_model(x, y, cfg)
    assert evaluate(a, x, y) > 0.8
    np.testing.assert_array_equal(a.predict_proba(x), b.predict_proba(x))


def test_params_pass_through_and_dict_config(xy) -> None:  # type: ignore[no-untyped-def]
    x, y = xy
    model = train_model(x, y, {"training": {"model_type": "random_forest",
                                            "params": {"n_estimators": 7, "max_depth": 2}}})
    estimator = model.named_steps["model"]  # the Pipeline ends with the estimator
    assert estimator.n_estimators == 7 and estimator.max_depth == 2


def test_unknown_param_names_the_key(xy) -> None:  # type: ignore[no-untyped-def]
    x, y = xy
    with pytest.raises(ConfigError, match=r"'training.params.n_trees' is not a parameter of "
                                          "RandomForestClassifier"):
        train_model(x, y, {"model_type": "random_forest", "params": {"n_trees": 3}})


def test_unknown_model_type(xy) -> None:  # type: ignore[no-untyped-def]
    x, y = xy
    with pytest.raises(ConfigError, match=r"training\.model_type"):
        train_model(x, y, {"training": {"model_type": "svm"}})
