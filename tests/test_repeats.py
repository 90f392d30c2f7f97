"""tune_grid.py --repeats R: each configuration trained R times with seeds SEED..SEED+R-1, ranked
by the mean; the figure draws one series per value of a categorical hyperparameter with the
range over repeats."""

import csv
import json

import pytest

import beans_tune.training
import tune_grid
from beans_tune.tuning import report
from beans_tune.tuning.space import parse_dim
from beans_tune.tuning.store import TrialStore
from conftest import is_trial, patch_train

TINY = ["--image-size", "8", "--units", "4", "--batch-size", "4", "--decay", "0", "--layers", "1"]


def rows(out):
    with (out / "results.csv").open() as handle:
        return list(csv.DictReader(handle))


@pytest.fixture
def seeded(monkeypatch):
    """Instant trainings scored lr*10 + (0.1 with BN) + seed/100: the seed moves the score, so a
    mean over repeats is visible. Returns the (learning rate, batch_norm, seed) of every trial."""
    real, calls = beans_tune.training.train, []

    def train(hp, *args, seed=0, **kwargs):
        if not is_trial(kwargs):  # the final model: really trains, 1 epoch
            return real(hp.__class__(**{**hp.to_dict(), "epochs": 1}), *args, seed=seed, **kwargs)
        calls.append((hp.learning_rate, hp.batch_norm, seed))
        score = hp.learning_rate * 10 + (0.1 if hp.batch_norm else 0) + seed / 100
        return beans_tune.training.TrainResult(None, {"val_accuracy": [score]}, score, 1, 0.0)

    patch_train(monkeypatch, train)
    return calls


def test_each_configuration_trains_once_per_seed_and_ranks_by_the_mean(data_dir, tmp_path, seeded, capsys):
    out = tmp_path / "run"
    assert tune_grid.main(["--data-dir", str(data_dir), "--out", str(out), "--learning-rate", "0.01,0.02",
                           "--batch-norm", "false,true", "--repeats", "3", "--seed", "5", *TINY]) == 0
    assert sorted(seeded) == sorted((lr, bn, s) for lr in (0.01, 0.02) for bn in (False, True) for s in (5, 6, 7))
    stored = rows(out)
    assert len(stored) == 12 and {r["fold"] for r in stored} == {"seed5", "seed6", "seed7"}
    printed = capsys.readouterr().out
    assert "mean of 3 trainings (seeds 5-7)" in printed
    table = printed.split("rank ")[-1].splitlines()[2:6]
    # ranked by the mean over seeds 5, 6, 7 (+0.06): 0.2+0.1, 0.2, 0.1+0.1, 0.1
    assert [line.split()[1:4] for line in table] == [["True", "0.02", "0.3600"], ["False", "0.02", "0.2600"],
                                                     ["True", "0.01", "0.2600"], ["False", "0.01", "0.1600"]]
    best = json.loads((out / "best.json").read_text())
    assert best["params"] == {"batch_norm": True, "learning_rate": 0.02} and best["val_accuracy"] == pytest.approx(0.36)


@pytest.mark.slow
def test_an_interrupted_repeated_grid_resumes_the_missing_seeds_only(data_dir, tmp_path, seeded, monkeypatch):
    out = tmp_path / "run"
    argv = ["--data-dir", str(data_dir), "--out", str(out), "--learning-rate", "0.01,0.02", "--repeats", "2", *TINY]
    instant = beans_tune.training.train

    def interrupted(hp, *args, **kwargs):
        if len(seeded) == 3:
            raise KeyboardInterrupt
        return instant(hp, *args, **kwargs)

    patch_train(monkeypatch, interrupted)
    assert tune_grid.main(argv) == 130
    assert len(rows(out)) == 3
    patch_train(monkeypatch, instant)
    assert tune_grid.main(argv) == 0
    assert sorted((r["learning_rate"], r["fold"]) for r in rows(out)) == [
        ("0.01", "seed0"), ("0.01", "seed1"), ("0.02", "seed0"), ("0.02", "seed1")]
    assert len(seeded) == 4  # 3 before the interrupt, 1 after


@pytest.mark.parametrize("extra", [["--cv", "2"], ["--halving"]])
def test_repeats_with_cv_or_halving_is_one_line(data_dir, tmp_path, capsys, extra):
    out = tmp_path / "run"
    assert tune_grid.main(["--data-dir", str(data_dir), "--out", str(out), "--learning-rate", "0.01,0.02",
                           "--repeats", "2", *extra, *TINY]) == 2
    assert capsys.readouterr().err.strip() == ("tune_grid.py: error: --repeats goes without --cv and --halving "
                                               "(each repeat is scored on the validation split)")
    assert not out.exists()


def test_the_figure_draws_a_series_per_categorical_value_with_the_range_over_repeats(data_dir, tmp_path, seeded):
    out = tmp_path / "run"
    assert tune_grid.main(["--data-dir", str(data_dir), "--out", str(out), "--learning-rate", "0.01,0.02,0.04",
                           "--batch-norm", "false,true", "--repeats", "2", *TINY]) == 0
    dims = [parse_dim("batch_norm", "false,true"), parse_dim("learning_rate", "0.01,0.02,0.04")]
    fig = report.plot_scores(TrialStore(out / "results.csv", ["batch_norm", "learning_rate"]).trials(), dims)
    assert len(fig.axes) == 1  # batch_norm is the series, not a panel
    ax = fig.axes[0]
    curves = {line.get_label(): (list(line.get_xdata()), list(line.get_ydata())) for line in ax.get_lines()}
    assert curves["batch_norm=False"][0] == [0.01, 0.02, 0.04]
    assert curves["batch_norm=False"][1] == pytest.approx([0.105, 0.205, 0.405])  # means over seeds 0, 1
    assert curves["batch_norm=True"][1] == pytest.approx([0.205, 0.305, 0.505])
    bands = [c for c in ax.collections if c.get_label().startswith("_")]
    assert len(bands) == 2
    lows = sorted(round(float(v), 3) for band in bands for v in band.get_paths()[0].vertices[:, 1])
    assert min(lows) == pytest.approx(0.1) and max(lows) == pytest.approx(0.51)  # seed 0 low, seed 1 high
