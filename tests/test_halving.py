"""Successive halving (--halving): epochs as scikit-learn's resource, every rung in the store,
resume mid-rung, the table's rungs, the flags' checks, and --final-epochs."""

import csv
import json
from collections import Counter

import pytest

import tune_grid
import tune_random
from beans_tune.hparams import HParams
from beans_tune.tuning import halving
from conftest import patch_train

TINY = ["--image-size", "8", "--units", "4", "--batch-size", "4", "--decay", "0", "--batch-norm", "false",
        "--augment", "false"]


def results(out):
    with (out / "results.csv").open() as handle:
        return list(csv.DictReader(handle))


def grid_argv(data_dir, out, *extra):
    return ["--data-dir", str(data_dir), "--out", str(out), "--halving", "--min-epochs", "1", "--factor", "3",
            "--epochs", "9", "--patience", "9", "--layers", "1,2,3", "--learning-rate", "1e-3", *TINY,
            "--units", "4,8,16", *extra]


class Stub:
    """An estimator whose score is a function of its parameters, with ties, and that fails for
    layers=3 past the first rung: what scikit-learn's halving ranks."""

    def __init__(self, layers=1, units=8, epochs=1):
        self.layers, self.units, self.epochs = layers, units, epochs

    def get_params(self, deep=True):
        return {"layers": self.layers, "units": self.units, "epochs": self.epochs}

    def set_params(self, **params):
        for name, value in params.items():
            setattr(self, name, value)
        return self

    def fit(self, X, y):
        if self.layers == 3 and self.epochs > 1:
            raise ValueError("fails")
        return self

    def score(self, X, y):
        return stub_score({"layers": self.layers, "units": self.units, "epochs": self.epochs})


def stub_score(params):
    return round(params["layers"] / 10 + (params["units"] % 3) / 100 + params["epochs"] / 1000, 6)


@pytest.mark.parametrize("grid", [True, False])
def test_the_rungs_promote_what_scikit_learns_halving_promotes(grid):
    """The same candidates in each rung, in the same order, as HalvingGridSearchCV /
    HalvingRandomSearchCV with epochs as their resource (ties and failures included)."""
    import warnings
    from argparse import Namespace

    import numpy as np
    from sklearn.base import BaseEstimator
    from sklearn.experimental import enable_halving_search_cv  # noqa: F401
    from sklearn.model_selection import HalvingGridSearchCV, HalvingRandomSearchCV, PredefinedSplit

    from beans_tune.tuning import searches
    from beans_tune.tuning.space import parse_dim

    estimator = type("StubEstimator", (Stub, BaseEstimator), {})()
    dims = (parse_dim("layers", "1,2,3,4" if grid else "1:4", allow_range=not grid),
            parse_dim("units", "8,9,10,11" if grid else "8:64", allow_range=not grid))
    space = {d.name: list(d.choices) for d in dims} if grid else {d.name: d.scipy() for d in dims}
    flags = Namespace(halving=True, min_epochs=None, factor=2, restart_rungs=True)  # scikit-learn restarts its rungs
    options = dict(resource="epochs", factor=2, min_resources="exhaust", max_resources=8, refit=False,
                   error_score=np.nan, cv=PredefinedSplit([-1, -1, 0, 0]))
    theirs = (HalvingGridSearchCV(estimator, space, **options) if grid
              else HalvingRandomSearchCV(estimator, space, n_candidates=12, random_state=5, **options))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs.fit(np.zeros((4, 1)), [0, 1, 0, 1])
    expected = [[{k: int(v) for k, v in p.items()} for p, i in zip(theirs.cv_results_["params"],
                                                                  theirs.cv_results_["iter"]) if i == rung]
                for rung in range(theirs.n_iterations_)]

    rungs = []

    def evaluate(candidates):
        rungs.append([{k: int(v) for k, v in c.items()} for c in candidates])
        return [{"status": "failed" if c["layers"] == 3 and c["epochs"] > 1 else "ok",
                 "val_accuracy": stub_score(c)} for c in candidates]

    first = searches.grid(dims) if grid else searches.sample(dims, 12, 5)
    halving.search(searches.Problem(dims, evaluate), first, flags, 8)
    assert len(rungs) == len(expected) >= 3
    assert rungs == expected


def test_schedule_is_scikit_learns():
    from argparse import Namespace

    flags = Namespace(halving=True, min_epochs=1, factor=3)
    assert halving.schedule(9, flags, 9) == [(1, 9), (3, 3), (9, 1)]
    assert halving.schedule(10, flags, 27) == [(1, 10), (3, 4), (9, 2), (27, 1)][:3]  # 1 + floor(log3 10) = 3 rungs
    assert halving.schedule(4, Namespace(halving=True, min_epochs=1, factor=2), 4) == [(1, 4), (2, 2), (4, 1)]
    # without --min-epochs, scikit-learn's "exhaust": the last rung trains (close to) --epochs,
    # however few the candidates (a fixed first rung of 1 would stop 2 candidates at 1 epoch)
    default = Namespace(halving=True, min_epochs=None, factor=None)
    assert halving.schedule(9, default, 9) == [(1, 9), (3, 3), (9, 1)]
    assert halving.schedule(2, default, 9) == [(9, 2)]
    # too many candidates for 20 epochs at factor 3: it stops at 9 with 4 left, as scikit-learn does
    assert halving.schedule(32, default, 20) == [(1, 32), (3, 11), (9, 4)]



def test_the_epochs_counted_are_the_ones_the_rungs_train():
    from argparse import Namespace

    flags = Namespace(halving=True, min_epochs=1, factor=3, restart_rungs=False)
    assert halving.epochs(9, flags, 9) == 9 * 1 + 3 * (3 - 1) + 1 * (9 - 3)  # each rung adds its new epochs
    flags.restart_rungs = True
    assert halving.epochs(9, flags, 9) == 9 * 1 + 3 * 3 + 1 * 9  # each rung trains from scratch


@pytest.mark.slow
def test_the_default_first_rung_lets_the_last_reach_the_epochs(data_dir, tmp_path, scored):
    out = tmp_path / "run"
    argv = grid_argv(data_dir, out)
    at = argv.index("--min-epochs")
    del argv[at:at + 2]
    assert tune_grid.main(argv) == 0
    assert Counter(int(r["epochs"]) for r in results(out)) == {1: 9, 3: 3, 9: 1}


def test_halving_grid_trains_each_rung_for_its_epochs(data_dir, tmp_path, capsys, scored):
    out = tmp_path / "run"
    assert tune_grid.main(grid_argv(data_dir, out)) == 0
    rows = results(out)
    assert "epochs" in rows[0] and "epochs_run" in rows[0]  # the rung's budget, and what ran
    assert Counter(int(r["epochs"]) for r in rows) == {1: 9, 3: 3, 9: 1}
    assert scored[:13] == [int(r["epochs"]) for r in rows]  # each training got its rung's epochs
    promoted = {(r["layers"], r["units"]) for r in rows if r["epochs"] == "3"}
    assert promoted == {("3", "16"), ("3", "8"), ("3", "4")}  # the best third of rung 0
    top = [r for r in rows if r["epochs"] == "9"]
    assert [(r["layers"], r["units"]) for r in top] == [("3", "16")]
    best = json.loads((out / "best.json").read_text())
    assert best["params"] == {"layers": 3, "units": 16, "epochs": 9}
    printed = capsys.readouterr().out
    assert "9 configurations, 13 trainings in" in printed  # 9 + 3 + 1 over three rungs
    table = printed[printed.index("rank  rung"):].splitlines()
    assert table[2].split()[:5] == ["1", "2", "3", "16", "9"]  # rank 1 is the top rung's trial
    assert table[3].split()[1] == "1"  # then rung 1


@pytest.mark.slow
def test_continuing_halving_trains_only_each_rungs_extra_epochs(data_dir, tmp_path, scored):
    out = tmp_path / "run"
    assert tune_grid.main(grid_argv(data_dir, out)) == 0
    rows = results(out)
    # rung 0 trains 1 epoch; a promoted configuration then trains 2 more to reach 3, then 6 to reach 9
    assert [(r["epochs"], r["epochs_run"]) for r in rows] == [("1", "1")] * 9 + [("3", "2")] * 3 + [("9", "6")]
    assert not (out / "checkpoints").exists()  # removed once no rung can need a state
    assert json.loads((out / "search.json").read_text())["method"]["halving"] == [1, 3, "continue"]


def test_restart_rungs_trains_every_rung_from_scratch(data_dir, tmp_path, scored, capsys):
    out = tmp_path / "run"
    assert tune_grid.main(grid_argv(data_dir, out, "--restart-rungs")) == 0
    assert [(r["epochs"], r["epochs_run"]) for r in results(out)] == [("1", "1")] * 9 + [("3", "3")] * 3 + [("9", "9")]
    assert json.loads((out / "search.json").read_text())["method"]["halving"] == [1, 3]
    capsys.readouterr()
    assert tune_grid.main(grid_argv(data_dir, out)) == 2  # a folder of one mode is not resumed in the other
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].endswith("its halving restarted its rungs, add --restart-rungs to resume it; "
                                             "choose another --out or pass --overwrite")


def test_a_killed_continuing_halving_resumes_from_its_saved_states(data_dir, tmp_path, monkeypatch, scored):
    out = tmp_path / "run"
    interrupt_at(monkeypatch, 11)  # Ctrl-C in rung 1's second training: rung 0 and one of rung 1 are done
    assert tune_grid.main(grid_argv(data_dir, out)) == 130
    assert len(results(out)) == 10
    saved = sorted((out / "checkpoints").iterdir())
    assert len(saved) == 3 + 1  # the 3 promoted candidates' rung-0 states, and rung 1's finished one's
    plans = interrupt_at(monkeypatch, None)
    scored.clear()
    assert tune_grid.main(grid_argv(data_dir, out)) == 0
    assert scored[:3] == [3, 3, 9]  # the two missing trainings of rung 1, then rung 2
    rows = results(out)
    assert [(r["epochs"], r["epochs_run"]) for r in rows[9:]] == [("3", "2")] * 3 + [("9", "6")]  # continued
    assert [p.start.epochs for p in plans[:3]] == [1, 1, 3]
    assert not (out / "checkpoints").exists()


def interrupt_at(monkeypatch, call):
    """beans_tune.training.train raises KeyboardInterrupt (Ctrl-C) at its `call`-th call; returns the plans it got."""
    import beans_tune.training

    plans, real = [], getattr(beans_tune.training.train, "unwrapped", beans_tune.training.train)  # the `scored` fixture's

    def interrupted(hp, *args, **kwargs):
        if len(plans) + 1 == call:
            raise KeyboardInterrupt
        plans.append(kwargs.get("plan"))
        return real(hp, *args, **kwargs)

    interrupted.unwrapped = real
    patch_train(monkeypatch, interrupted)
    return plans


def test_the_schedule_spans_the_top_rung_that_runs_not_a_longer_epochs(data_dir, tmp_path, monkeypatch, scored):
    out = tmp_path / "run"
    plans = interrupt_at(monkeypatch, None)
    argv = grid_argv(data_dir, out)
    argv[argv.index("--epochs") + 1] = "20"  # 9 candidates, factor 3 from 1 epoch: rungs of 1, 3, 9 epochs
    assert tune_grid.main(argv) == 0
    assert Counter(int(r["epochs"]) for r in results(out)) == {1: 9, 3: 3, 9: 1}
    assert {p.horizon for p in plans[:13]} == {9}  # the cosine reaches 0 at the top rung's end, as in its restart


@pytest.mark.parametrize("spoil", ["empty", "cut"])
def test_a_spoilt_saved_state_means_that_training_starts_over(data_dir, tmp_path, monkeypatch, scored, spoil):
    out = tmp_path / "run"
    interrupt_at(monkeypatch, 11)  # Ctrl-C in rung 1's second training
    assert tune_grid.main(grid_argv(data_dir, out)) == 130
    for state in (out / "checkpoints").iterdir():
        data = state.read_bytes()
        state.write_bytes(b"" if spoil == "empty" else data[:len(data) // 2])
    plans = interrupt_at(monkeypatch, None)
    assert tune_grid.main(grid_argv(data_dir, out)) == 0
    rows = results(out)
    # the two missing trainings of rung 1 start over (3 epochs); rung 2 continues theirs (6 more)
    assert [(r["epochs"], r["epochs_run"]) for r in rows[10:]] == [("3", "3"), ("3", "3"), ("9", "6")]
    assert [p.start is None for p in plans[:3]] == [True, True, False]
    assert not (out / "checkpoints").exists()


def test_overwrite_removes_a_previous_halvings_saved_states(data_dir, tmp_path, monkeypatch, scored):
    out = tmp_path / "run"
    interrupt_at(monkeypatch, 11)
    assert tune_grid.main(grid_argv(data_dir, out)) == 130
    assert any((out / "checkpoints").iterdir())
    interrupt_at(monkeypatch, None)
    assert tune_grid.main([*grid_argv(data_dir, out, "--restart-rungs"), "--overwrite"]) == 0
    assert not (out / "checkpoints").exists()


@pytest.mark.slow
def test_halving_resumes_mid_rung(data_dir, tmp_path, capsys, scored):
    out = tmp_path / "run"
    assert tune_grid.main(grid_argv(data_dir, out)) == 0
    lines = (out / "results.csv").read_text().splitlines(keepends=True)
    (out / "results.csv").write_text("".join(lines[:11]))  # header, rung 0, one of rung 1
    (out / "best.json").unlink()
    scored.clear()
    assert tune_grid.main(grid_argv(data_dir, out)) == 0
    assert scored[:3] == [3, 3, 9]  # the two missing trainings of rung 1, then rung 2
    assert len(scored) == 4  # and the final model
    assert Counter(int(r["epochs"]) for r in results(out)) == {1: 9, 3: 3, 9: 1}
    assert json.loads((out / "best.json").read_text())["params"] == {"layers": 3, "units": 16, "epochs": 9}


def test_halving_random_search_and_final_epochs(data_dir, tmp_path, scored, capsys):
    out = tmp_path / "run"
    argv = ["--data-dir", str(data_dir), "--out", str(out), "--halving", "--n-iter", "4", "--min-epochs", "1",
            "--factor", "2", "--epochs", "4", "--layers", "1:3", *TINY, "--learning-rate", "1e-4:1e-2",
            "--schedule", "inverse-time", "--final-epochs", "7"]
    assert tune_random.main(argv) == 0
    assert Counter(int(r["epochs"]) for r in results(out)) == {1: 4, 2: 2, 4: 1}
    assert scored[-1] == 7  # the final model trained for --final-epochs
    best = json.loads((out / "best.json").read_text())
    assert best["hparams"]["epochs"] == 7 and best["params"]["epochs"] == 4
    capsys.readouterr()
    assert tune_random.main([*argv[:-1], "9"]) == 0  # finished: not trained again, and it says so
    assert capsys.readouterr().err.strip() == ("tune_random.py: note: --final-epochs 9 not applied: the finished "
                                               "search's model trained for up to 7 epochs")
    assert tune_random.main([*argv, "--final-patience", "3"]) == 0
    assert capsys.readouterr().err.strip() == ("tune_random.py: note: --final-patience 3 not applied: the finished "
                                               "search's model trained with patience 20")
    assert scored[-1] == 7


def test_a_candidate_drawn_twice_is_trained_once(data_dir, tmp_path, scored):
    # integer ranges are sampled with replacement: 6 draws from 4 configurations repeat some
    out = tmp_path / "run"
    assert tune_random.main(["--data-dir", str(data_dir), "--out", str(out), "--halving", "--n-iter", "6",
                             "--min-epochs", "1", "--factor", "2", "--epochs", "2", "--layers", "1:2",
                             "--learning-rate", "1e-3", *TINY, "--units", "4,8"]) == 0
    rows = results(out)
    keys = [(r["layers"], r["units"], r["epochs"]) for r in rows]
    assert len(keys) == len(set(keys)) < 6 + 3, "each configuration is trained once per rung"
    assert len(scored) == len(rows) + 1  # and the final model


@pytest.mark.parametrize("argv, trial, final, data", [
    # the searches' trials: 20 epochs on a cosine schedule run to its end; the model kept: 60 epochs on
    # train + validation, all of them (auto), unless a flag says otherwise
    ([], (20, 20), (60, 60), "train+validation"),
    (["--epochs", "3"], (3, 3), (3, 3), "train+validation"),       # a budget the user set is kept, run to its end
    (["--patience", "2"], (20, 2), (60, 2), "train"),              # early stopping asked for: train
    (["--final-epochs", "6"], (20, 20), (6, 6), "train+validation"),
    (["--epochs", "3", "--patience", "2", "--final-epochs", "6"], (3, 2), (6, 2), "train"),
    (["--final-epochs", "6", "--final-patience", "4"], (20, 20), (6, 4), "train"),
    (["--schedule", "inverse-time", "--final-epochs", "6"], (20, 20), (6, 20), "train"),
    (["--schedule", "inverse-time"], (20, 20), (60, 20), "train"),
    (["--schedule", "inverse-time", "--epochs", "3"], (3, 20), (3, 20), "train"),  # keeps early stopping
    (["--final-data", "train"], (20, 20), (60, 60), "train"),       # cosine runs to its end, the best epoch kept
])
def test_the_final_model_trains_longer_than_the_trials_unless_told(data_dir, tmp_path, scored, argv, trial, final,
                                                                   data):
    out = tmp_path / "run"
    assert tune_grid.main(["--data-dir", str(data_dir), "--out", str(out), "--layers", "1,2", "--learning-rate",
                           "1e-3", *TINY, *argv]) == 0
    assert scored == [trial[0], trial[0], final[0]]
    best = json.loads((out / "best.json").read_text())
    assert (best["hparams"]["epochs"], best["hparams"]["patience"]) == final
    assert best["final_data"] == data
    assert best["hparams"]["schedule"] == ("inverse-time" if "inverse-time" in argv else "cosine")
    assert {(int(r["epochs"])) for r in results(out)} <= {trial[0]}
    fixed = {**HParams().to_dict(), **json.loads((out / "search.json").read_text())["fixed"]}  # defaults left out
    assert (fixed["epochs"], fixed["patience"]) == trial
    assert fixed["schedule"] == ("inverse-time" if "inverse-time" in argv else "cosine")


@pytest.mark.slow
def test_the_final_budget_is_said_in_words(data_dir, tmp_path, scored, capsys):
    assert tune_grid.main(["--data-dir", str(data_dir), "--out", str(tmp_path / "run"), "--layers", "1,2",
                           "--learning-rate", "1e-3", *TINY, "--epochs", "3", "--final-epochs", "1",
                           "--schedule", "inverse-time"]) == 0
    assert "retraining on the train split for up to 1 epoch, patience 20 (the trial had 3 epochs, patience 20)" \
        in capsys.readouterr().out


@pytest.mark.slow
def test_with_cosine_the_final_model_keeps_a_patience_the_user_set(data_dir, tmp_path, scored):
    grid = tmp_path / "grid.json"
    grid.write_text(json.dumps({"layers": [1, 2], "patience": [1]}))
    for name, flags, budget in [("file", ["--grid", str(grid)], (3, 1)), ("flag", ["--layers", "1,2", "--patience", "2"], (3, 2)),
                                ("default", ["--layers", "1,2"], (3, 3))]:
        out = tmp_path / name
        assert tune_grid.main(["--data-dir", str(data_dir), "--out", str(out), "--schedule", "cosine", "--epochs", "3",
                               *TINY, *flags]) == 0
        best = json.loads((out / "best.json").read_text())["hparams"]
        assert (best["epochs"], best["patience"], best["schedule"]) == (*budget, "cosine"), name


@pytest.mark.parametrize("script, argv, message", [
    (tune_grid, ["--min-epochs", "2"], "--min-epochs, --factor and --restart-rungs go with --halving"),
    (tune_random, ["--factor", "2"], "--min-epochs, --factor and --restart-rungs go with --halving"),
    (tune_random, ["--restart-rungs"], "--min-epochs, --factor and --restart-rungs go with --halving"),
    (tune_random, ["--halving", "--epochs", "2:8"], "give --epochs one value"),
    (tune_grid, ["--halving", "--epochs", "4", "--min-epochs", "5"], "--min-epochs 5 is above --epochs 4"),
    (tune_random, ["--halving", "--refine", "1"], "--halving and --refine do not combine"),
    (tune_grid, ["--halving", "--factor", "1"], "--factor"),
])
def test_halving_flags_are_checked_before_any_work(data_dir, tmp_path, capsys, script, argv, message):
    out = tmp_path / "run"
    assert script.main(["--data-dir", str(data_dir), "--out", str(out), *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert not out.exists()
