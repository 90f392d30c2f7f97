"""examples/: scikit-learn's GridSearchCV and RandomizedSearchCV and scikit-optimize's gp_minimize,
each run whole on a tiny generated folder (8x8 images, 1 epoch): the lecture's calls work with the
project's estimator and training function as written."""

import importlib.util

import pytest

from conftest import ROOT


def example(name):
    spec = importlib.util.spec_from_file_location(f"example_{name}", ROOT / "examples" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_grid_search_cv_scores_every_combination_on_the_validation_fold(data_dir, capsys):
    search = example("grid_search_cv").main(data_dir, image_size=8, epochs=1)
    assert len(search.cv_results_["params"]) == 4 and search.n_splits_ == 1
    assert "test accuracy" in capsys.readouterr().out


@pytest.mark.slow
def test_randomized_search_cv_draws_the_learning_rate_log_uniformly(data_dir, capsys):
    search = example("randomized_search_cv").main(data_dir, image_size=8, epochs=1, n_iter=3)
    rates = [p["learning_rate"] for p in search.cv_results_["params"]]
    assert len(rates) == 3 and all(1e-4 <= r <= 1e-2 for r in rates)
    assert search.param_distributions["learning_rate"].dist.name == "loguniform"
    assert "test accuracy" in capsys.readouterr().out


@pytest.mark.slow
def test_gp_minimize_with_expected_improvement_proposes_after_its_random_points(data_dir, capsys):
    result = example("gp_minimize").main(data_dir, image_size=8, epochs=1, n_calls=5)
    assert len(result.x_iters) == 5 and len(result.models) >= 1  # the GP fitted after 4 random points
    assert result.specs["args"]["acq_func"] == "EI"
    assert "test accuracy" in capsys.readouterr().out
