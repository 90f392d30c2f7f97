"""studies/: the BN study's bookkeeping on instant trainings with known curves (its figures on
the real data are measured by running it, not here)."""

import importlib.util
import json

import pytest

import common
from conftest import ROOT

spec = importlib.util.spec_from_file_location("bn_learning_rate", ROOT / "studies" / "bn_learning_rate.py")
study = importlib.util.module_from_spec(spec)
spec.loader.exec_module(study)


def test_the_widest_interval_is_the_longest_run_of_rates_reaching_the_threshold():
    rates = [1e-4, 1e-3, 1e-2, 1e-1, 1]
    assert study.widest_interval(rates, [0.9, 0.5, 0.85, 0.9, 0.81], 0.8) == (1e-2, 1)
    assert study.widest_interval(rates, [0.9, 0.9, 0.5, 0.9, 0.5], 0.8) == (1e-4, 1e-3)
    assert study.widest_interval(rates, [0.1] * 5, 0.8) is None


@pytest.fixture
def known_curves(monkeypatch):
    """Instant trainings: BN reaches 0.9 at epoch 2 for rates up to 0.1; the baseline reaches
    0.9 at epoch 3 at 1e-3 only and diverges at 1; seed 1 scores 0.02 lower everywhere."""
    real = common.train

    def train(hp, *args, seed=0, **kwargs):
        if kwargs.get("log") is not None:  # the grid search's final model
            return real(hp.__class__(**{**hp.to_dict(), "epochs": 1}), *args, seed=seed, **kwargs)
        if not hp.batch_norm and hp.learning_rate >= 1:
            return common.TrainResult(None, {"val_accuracy": [0.3], "loss": [float("nan")]}, float("nan"), 1, 0.0,
                                      status="nan")
        good = hp.learning_rate <= 0.1 if hp.batch_norm else hp.learning_rate == 1e-3
        top = (0.9 if good else 0.5) - seed * 0.02
        reach = 2 if hp.batch_norm else 3
        curve = [0.4 + (top - 0.4) * min(epoch, reach) / reach for epoch in range(1, hp.epochs + 1)]
        return common.TrainResult(None, {"val_accuracy": curve, "loss": [1.0] * hp.epochs}, max(curve), hp.epochs, 0.0)

    monkeypatch.setattr(common, "train", train)


def test_the_learning_rate_study_reports_intervals_and_epochs_to_the_threshold(data_dir, tmp_path, known_curves,
                                                                                 capsys):
    out = tmp_path / "study"
    assert study.main(["--data-dir", str(data_dir), "--image-size", "8", "--epochs", "4", "--seeds", "2",
                       "--rates", "1e-3,1e-2,1e-1,1", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "baseline: mean >= 0.8 for learning rates 0.001 to 0.001 (1x); best rate 0.001: first reached 0.8 " \
           "at epoch 3 (median; seeds: 3, 3)" in printed
    assert "bn      : mean >= 0.8 for learning rates 0.001 to 0.1 (100x); best rate 0.001: first reached 0.8 " \
           "at epoch 2 (median; seeds: 2, 2)" in printed
    lines = {line.split()[0]: line.split()[1:] for line in printed.splitlines() if line[:1].isdigit()}
    assert lines["1"] == ["0.000", "[0.000-0.000]", "0.490", "[0.480-0.500]"]  # diverged: counted as 0
    assert lines["0.001"] == ["0.890", "[0.880-0.900]", "0.890", "[0.880-0.900]"]
    saved = json.loads((out / "study.json").read_text())
    assert saved["models"]["bn"]["interval"] == [0.001, 0.1]
    assert (out / "convergence.png").stat().st_size > 0 and (out / "grid" / "val_accuracy.png").exists()
