"""--prune: a trial that falls behind the finished ones stops (Optuna's MedianPruner rule), is
stored as pruned with its epochs and its score so far, is never trained again on resume, and is
told to the Bayesian optimizer as the score it reached."""

import csv
import dataclasses
import json
import math
import statistics

import pytest

import beans_tune.training
import tune_bayes
import tune_grid
import tune_random
from beans_tune import checkpoint, images
from beans_tune.hparams import HParams
from beans_tune.tuning import pruning, searches
from conftest import is_trial, patch_train

EPOCHS = 8
# grid order = the order given: four finished trials (layers 6..3), then two that fall behind
SIX = ["--layers", "6,5,4,3,2,1", "--learning-rate", "1e-3", "--batch-size", "4", "--units", "10",
       "--image-size", "8", "--epochs", str(EPOCHS), "--decay", "0", "--augment", "false"]


def rows(out):
    with (out / "results.csv").open() as handle:
        return list(csv.DictReader(handle))


def rising(hp):
    """A trial's curve: rising in equal steps to layers / 10 + units / 1000 at its last epoch."""
    score = hp.layers / 10 + hp.units / 1000
    return [score * e / hp.epochs for e in range(1, hp.epochs + 1)]


def curves(monkeypatch, interrupt_at=None, curve=rising):
    """beans_tune.training.train with each trial's curve given by `curve(hp)` and the pruning bar
    applied to it epoch by epoch as training.train applies it; the final model trains for real,
    1 epoch. Returns the bars each trial was handed (None before the startup trials)."""
    real = beans_tune.training.train
    bars = []

    def train(hp, *args, **kwargs):
        if not is_trial(kwargs):
            return real(dataclasses.replace(hp, epochs=1), *args, **kwargs)
        bar = kwargs["plan"].prune
        bars.append(bar)
        if interrupt_at is not None and len(bars) == interrupt_at:
            raise KeyboardInterrupt
        values = curve(hp)
        for epoch in range(1, len(values) + 1):
            best = max(values[:epoch])
            if bar is not None and bar.stops(epoch, best, len(values)):
                return beans_tune.training.TrainResult(None, {"val_accuracy": values[:epoch], "loss": [1.0] * epoch},
                                                       best, epoch, 0.0, status="pruned", message=bar.why(epoch, best))
        return beans_tune.training.TrainResult(None, {"val_accuracy": values, "loss": [1.0] * len(values)},
                                               max(values), len(values), 0.0)

    patch_train(monkeypatch, train)
    return bars


# --- the rule --------------------------------------------------------------------------


def test_the_bar_is_the_median_of_finished_trials_at_each_epoch_after_the_warm_up():
    bar = pruning.Bar(pruning.medians([[0.1, 0.5, 0.5], [0.3, 0.6], [0.8, 0.7, 0.9]]), warmup=1)
    assert bar.medians == (0.3, 0.6, 0.7)  # the median, not the mean; epoch 3: the two curves that reach it
    assert not bar.stops(1, 0.0, 9)        # within the warm-up
    assert bar.stops(2, 0.59, 9) and not bar.stops(2, 0.6, 9)  # strictly below
    assert not bar.stops(2, 0.0, 2)        # its last epoch: stopping saves nothing
    assert not bar.stops(4, 0.0, 9)        # past every finished curve: nothing to compare with
    assert pruning.Bar((math.nan, 0.5), warmup=0).stops(1, 0.0, 9) is False


def test_the_pruner_holds_trainings_to_finished_trials_only():
    pruner = pruning.Pruner(startup=2, warmup=0)
    pruner.add({"status": "ok"}, {"val_accuracy": [0.5]})
    pruner.add({"status": "pruned"}, {"val_accuracy": [0.9]})  # no reference
    pruner.add({"status": "diverged"}, {"val_accuracy": [0.9]})
    assert pruner.bar() is None  # one finished trial of two
    pruner.add({"status": "ok"}, {"val_accuracy": [0.7]})
    assert pruner.bar().medians == (0.6,) and pruner.bar().finished == 2


class Model:
    stop_training = False


def test_a_training_is_held_by_its_best_so_far_and_never_stopped_at_an_end_it_reached_anyway():
    bar = pruning.Bar((0.5,) * 10, warmup=1)
    prune = beans_tune.training.Prune(Model(), bar, epochs=6)
    for epoch, score in enumerate([0.2, 0.6, 0.1, 0.1, 0.1]):  # its best so far stays 0.6 >= 0.5
        prune.on_epoch_end(epoch, {"val_accuracy": score})
    assert not prune.model.stop_training and prune.message == ""
    late = beans_tune.training.Prune(Model(), bar, epochs=3)
    for epoch in range(3):
        late.on_epoch_end(epoch, {"val_accuracy": 0.1})
        if epoch == 1:
            assert late.message == "epoch 2: 0.1000 < median 0.5000" and late.model.stop_training
    last = beans_tune.training.Prune(Model(), pruning.Bar((0.5,) * 10, warmup=2), epochs=3)
    for epoch in range(3):
        last.on_epoch_end(epoch, {"val_accuracy": 0.1})
    assert last.message == ""  # its last epoch: stopping would save nothing
    stopped = Model()
    early = beans_tune.training.Prune(stopped, bar, epochs=6)
    early.on_epoch_end(0, {"val_accuracy": 0.1})
    stopped.stop_training = True  # early stopping ends the training at epoch 2
    early.on_epoch_end(1, {"val_accuracy": 0.1})
    assert early.message == ""  # it ends anyway: a result, not pruned


def test_a_training_held_to_a_bar_it_cannot_reach_stops_right_after_the_warm_up(tmp_path):
    from conftest import make_image_folder

    beans = images.Beans(make_image_folder(tmp_path / "beans"), image_size=8)
    hp = HParams(epochs=6, patience=6, batch_size=4, units=4, layers=1)
    plan = checkpoint.Plan(prune=pruning.Bar((1.5,) * 6, warmup=2))
    result = beans_tune.training.train(hp, beans.train, beans.validation, log=None, plan=plan)
    assert result.status == "pruned" and result.epochs == 3 and len(result.history["val_accuracy"]) == 3
    assert result.val_accuracy == max(result.history["val_accuracy"])  # its score so far
    assert result.message.startswith("epoch 3: ") and "< median 1.5000" in result.message
    free = beans_tune.training.train(hp, beans.train, beans.validation, log=None,
                                     plan=checkpoint.Plan(prune=pruning.Bar((0.0,) * 6, warmup=2)))
    assert free.status == "ok" and free.epochs == 6
    last = beans_tune.training.train(hp, beans.train, beans.validation, log=None,
                                     plan=checkpoint.Plan(prune=pruning.Bar((1.5,) * 6, warmup=5)))
    assert last.status == "ok" and last.epochs == 6  # below the bar only at its last epoch: kept


# --- a search with --prune -------------------------------------------------------------


@pytest.mark.parametrize("script, extra", [(tune_grid, []), (tune_random, ["--n-iter", "6"])])
def test_trials_behind_the_median_are_stored_pruned_with_their_epochs_and_score(data_dir, tmp_path, monkeypatch,
                                                                                capsys, script, extra):
    out = tmp_path / "run"
    # random search: layers and units drawn, so that no two candidates are the same
    argv = SIX if script is tune_grid else [{"6,5,4,3,2,1": "1:6", "10": "8:64"}.get(a, a) for a in SIX]
    bars = curves(monkeypatch)
    assert script.main(["--data-dir", str(data_dir), "--out", str(out), "--prune", *argv, *extra]) == 0
    printed = capsys.readouterr().out
    stored = rows(out)
    assert len(stored) == 6 and len(bars) == 6
    assert bars[:pruning.STARTUP_TRIALS] == [None] * pruning.STARTUP_TRIALS  # the startup trials run to the end
    assert all(r["status"] == "ok" and r["epochs"] == str(EPOCHS) for r in stored[:pruning.STARTUP_TRIALS])
    final = {id(r): int(r["layers"]) / 10 + int(r.get("units", 10)) / 1000 for r in stored}  # each curve's last
    pruned = [r for r in stored if r["status"] == "pruned"]
    assert pruned, stored
    for row in pruned:
        epochs = int(row["epochs"])
        assert epochs == pruning.WARMUP_EPOCHS + 1  # the first epoch it may stop at
        assert float(row["val_accuracy"]) == pytest.approx(final[id(row)] * epochs / EPOCHS)  # its score so far
        before = [final[id(r)] for r in stored[:stored.index(row)] if r["status"] == "ok"]
        median = statistics.median(before) * epochs / EPOCHS  # the finished curves' median at its epoch
        assert final[id(row)] < statistics.median(before)
        assert row["message"] == f"epoch {epochs}: {float(row['val_accuracy']):.4f} < median {median:.4f}"
    if script is tune_grid:
        assert [r["status"] for r in stored] == ["ok"] * 4 + ["pruned"] * 2
    assert "PRUNED (epoch 5: " in printed  # its progress line
    assert "pruned: epoch 5" in printed.split("rank ")[1]  # the table
    assert f"{len(pruned)} pruned (stopped early" in printed  # left out of the importance table
    best = json.loads((out / "best.json").read_text())
    winner = max((r for r in stored if r["status"] == "ok"), key=lambda r: final[id(r)])
    assert best["params"]["layers"] == int(winner["layers"]) and best["hparams"]["units"] == int(winner.get("units", 10))
    histories = [json.loads(line) for line in (out / "histories.jsonl").read_text().splitlines()]
    assert [len(h["history"]["val_accuracy"]) for h in histories] == [int(r["epochs"]) for r in stored]


def test_without_prune_every_trial_runs_to_the_end(data_dir, tmp_path, monkeypatch):
    out = tmp_path / "run"
    bars = curves(monkeypatch)
    assert tune_grid.main(["--data-dir", str(data_dir), "--out", str(out), *SIX]) == 0
    assert bars == [None] * 6 and {r["status"] for r in rows(out)} == {"ok"}
    assert "prune" not in json.loads((out / "search.json").read_text())  # older folders stay resumable


def test_a_killed_pruning_search_resumes_to_the_same_trials_and_does_not_retrain_pruned_ones(data_dir, tmp_path,
                                                                                          monkeypatch):
    argv = ["--data-dir", str(data_dir), "--prune", *SIX]
    curves(monkeypatch)
    assert tune_grid.main([*argv, "--out", str(tmp_path / "whole")]) == 0
    curves(monkeypatch, interrupt_at=6)  # after the first pruned trial
    assert tune_grid.main([*argv, "--out", str(tmp_path / "cut")]) == 130
    assert [r["status"] for r in rows(tmp_path / "cut")][-1] == "pruned"
    bars = curves(monkeypatch)
    assert tune_grid.main([*argv, "--out", str(tmp_path / "cut"), "--retry-failed"]) == 0
    assert len(bars) == 1  # only the missing trial: the pruned one is an answer, not a failure to retry
    assert bars[0] is not None and bars[0].finished == pruning.STARTUP_TRIALS  # the medians read back from disk

    def result(out):
        return [(r["layers"], r["status"], r["epochs"], r["val_accuracy"], r["message"]) for r in rows(out)]

    assert result(tmp_path / "cut") == result(tmp_path / "whole")


def test_a_search_without_prune_is_not_resumed_with_it(data_dir, tmp_path, monkeypatch, capsys):
    out = tmp_path / "run"
    curves(monkeypatch, interrupt_at=3)
    assert tune_grid.main(["--data-dir", str(data_dir), "--out", str(out), *SIX]) == 130
    capsys.readouterr()
    assert tune_grid.main(["--data-dir", str(data_dir), "--out", str(out), "--prune", *SIX]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "prune" in err


def test_prune_with_halving_is_refused_before_any_training(data_dir, tmp_path, monkeypatch, capsys):
    bars = curves(monkeypatch)
    out = tmp_path / "run"
    assert tune_grid.main(["--data-dir", str(data_dir), "--out", str(out), "--prune", "--halving",
                           "--layers", "1,2", "--epochs", "4"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "tune_grid.py: error: --prune and --halving each stop trainings early, by their own rule: choose one"
    assert bars == [] and not out.exists()


@pytest.mark.parametrize("script, more, flag", [(tune_grid, ["--cv", "2"], "--cv"),
                                                (tune_grid, ["--repeats", "2"], "--repeats"),
                                                (tune_random, ["--cv", "2", "--n-iter", "2"], "--cv")])
def test_prune_with_folds_or_repeats_is_refused_before_any_training(data_dir, tmp_path, monkeypatch, capsys, script,
                                                                    more, flag):
    bars = curves(monkeypatch)
    out = tmp_path / "run"
    assert script.main(["--data-dir", str(data_dir), "--out", str(out), "--prune", "--layers", "1,2", *more]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"--prune goes with a search scored on the validation split, not with {flag}" in err
    assert bars == [] and not out.exists()


def test_the_bayesian_optimizer_is_told_a_pruned_trials_score_so_far():
    assert searches._objective("pruned", 0.7) == pytest.approx(0.3)
    assert searches._objective("ok", 0.9) == pytest.approx(0.1)
    assert searches._objective("diverged", math.nan) == 1.0 and searches._objective("pruned", math.nan) == 1.0


def test_a_bayesian_search_with_prune_tells_the_gp_what_the_store_holds(data_dir, tmp_path, monkeypatch):
    out = tmp_path / "run"
    told = []
    real_tell = searches.ask_tell

    def spying(optimizer, evaluate, n_calls, n_points=1):
        result = real_tell(optimizer, evaluate, n_calls, n_points)
        told.extend(optimizer.yi)
        return result

    monkeypatch.setattr(searches, "ask_tell", spying)
    # flat curves at 0.1 per decade of learning rate above 1e-5: half the draws fall below the median
    curves(monkeypatch, curve=lambda hp: [0.1 * math.log10(hp.learning_rate / 1e-5)] * hp.epochs)
    argv = ["--data-dir", str(data_dir), "--out", str(out), "--prune", "--n-calls", "8", "--n-initial-points", "8",
            "--learning-rate", "1e-4:1e-1", "--layers", "1", "--units", "10", "--batch-size", "4", "--image-size", "8",
            "--epochs", str(EPOCHS), "--decay", "0", "--augment", "false"]
    assert tune_bayes.main(argv) == 0
    stored = rows(out)
    assert "pruned" in {r["status"] for r in stored}, stored
    assert told == pytest.approx([1 - float(r["val_accuracy"]) for r in stored])  # pruned ones as stored
