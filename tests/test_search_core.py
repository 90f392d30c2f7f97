"""Regression tests for the search core (tuning/): each test names the defect it pins down."""

import csv
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import beans_tune.cnn
import beans_tune.hparams
import beans_tune.images
import beans_tune.training
import beans_tune.tuning.methods
import tune_bayes
import tune_grid
import tune_random
from beans_tune.tuning import outfolder, runner, searches, store
from beans_tune.tuning.evaluate import Evaluator
from beans_tune.tuning.execution import Execution
from beans_tune.tuning.space import build_space
from conftest import make_image_folder, patch_train

# The searches tune the BN model by default (test_the_searches_tune_the_bn_model_by_default);
# these tests are about the search machinery, which the cheaper baseline model exercises as well.
TINY = ["--image-size", "8", "--epochs", "1", "--units", "4", "--batch-size", "4", "--decay", "0", "--batch-norm", "false",
        "--augment", "false"]
ROOT = Path(__file__).resolve().parents[1]


def rows(out):
    with (out / "results.csv").open() as handle:
        return list(csv.DictReader(handle))


def count_trainings(monkeypatch, fail=lambda hp, n: None):
    """Counts beans_tune.training.train calls; `fail(hp, n)` may return an exception to raise instead."""
    calls = []
    real = beans_tune.training.train

    def counting(hp, *args, **kwargs):
        calls.append(hp)
        error = fail(hp, len(calls))
        if error is not None:
            raise error
        return real(hp, *args, **kwargs)

    patch_train(monkeypatch, counting)
    return calls


# 1 -------------------------------------------------------------------------------------------

def test_a_cut_counts_bytes_not_characters(tmp_path):
    log = store.TrialStore(tmp_path / "results.csv", ["layers"])
    log.create()
    log.record({"layers": 1}, "validation", float("nan"), 1.0, status="failed", message="café déjà vu")
    log.record({"layers": 2}, "validation", 0.6, 1.0)
    with open(log.path, "a") as handle:
        handle.write("3,3,valid")
    log.record({"layers": 4}, "validation", 0.7, 1.0)
    assert [(r["params"]["layers"], r["message"]) for r in log.rows()] == [
        (1, "café déjà vu"), (2, ""), (4, "")]


def test_a_file_that_is_not_a_store_is_one_line(tmp_path):
    path = tmp_path / "results.csv"
    log = store.TrialStore(path, ["layers"])
    log.create()
    log.record({"layers": 1}, "validation", 0.5, 1.0)
    with open(path, "a") as handle:
        handle.write("garbage\n")
    with pytest.raises(beans_tune.hparams.UsageError, match="line 3 is not a row of this search"):
        log.rows()
    path.write_text("")  # an empty file gets its header back
    log.create()
    log.record({"layers": 1}, "validation", 0.5, 1.0)
    assert len(log.rows()) == 1


def test_partial_last_line_is_cut_before_the_next_append(tmp_path):
    log = store.TrialStore(tmp_path / "results.csv", ["layers"])
    log.create()
    log.record({"layers": 1}, "validation", 0.5, 1.0)
    with open(log.path, "a") as handle:
        handle.write("2,3,validation,0.7")  # a crash mid-write
    assert [r["params"]["layers"] for r in log.rows()] == [1]  # the partial line is not a row
    assert log.record({"layers": 3}, "validation", 0.6, 1.0) == 2
    lines = Path(log.path).read_text().splitlines()
    assert len(lines) == 3 and lines[2].startswith("2,3,validation,0.6,")
    assert [(r["trial"], r["params"]["layers"]) for r in log.rows()] == [("1", 1), ("2", 3)]
    assert log.record({"layers": 4}, "validation", 0.7, 1.0) == 3  # and the file stays readable


# 2 -------------------------------------------------------------------------------------------

class SerialPairs(Execution):
    """Trials two at a time, as --n-jobs 2 asks for them, run here one after the other."""

    def __init__(self):
        super().__init__(n_jobs=2)

    def run(self, fn, items, *data):
        return ((index, fn(item, *data)) for index, item in enumerate(items))


def evaluator(log, train, seed=0, execution=None):
    """The evaluate path over `log`, training with `train(job, base, data, options) -> row`."""
    return Evaluator(log, beans_tune.hparams.HParams(), runner.Data(None, None), runner.TrialOptions(seed=seed),
                     execution or Execution(), train=train)


def stub_row(job, score):
    return {"params": job.params, "fold": job.fold, "val_accuracy": score, "fit_seconds": 1.0}


def fake_bayes_run(tmp_path, monkeypatch, n_calls, interrupt_after=None):
    """bayes_search on a stub trainer (score from the point itself) and a store in tmp_path;
    returns (points proposed, points trained, number of GP models at each training)."""
    from beans_tune.tuning.space import parse_dim

    log = store.TrialStore(tmp_path / "results.csv", ["learning_rate", "layers"])
    log.create()
    proposed, trained, models = [], [], []
    optimizers = []
    real_optimizer, real_ask_tell = searches.gp_optimizer, searches.ask_tell
    monkeypatch.setattr(searches, "gp_optimizer", lambda *a: optimizers.append(real_optimizer(*a)) or optimizers[-1])

    def spy_ask_tell(optimizer, evaluate, *args, **kw):
        def wrapped(points):
            proposed.extend(tuple(p) for p in points)
            return evaluate(points)
        return real_ask_tell(optimizer, wrapped, *args, **kw)

    def stub_train(job, base, data, options):
        if interrupt_after is not None and len(trained) == interrupt_after:
            raise KeyboardInterrupt
        params = job.params
        trained.append((params["learning_rate"], params["layers"]))
        models.append(len(optimizers[-1].models))
        return stub_row(job, 0.9 - abs(np.log10(params["learning_rate"]) + 2) / 10 - abs(params["layers"] - 2) / 10)

    monkeypatch.setattr(searches, "ask_tell", spy_ask_tell)
    dims = (parse_dim("learning_rate", "1e-4:1e-1"), parse_dim("layers", "1:4"))
    problem = searches.Problem(dims, evaluator(log, stub_train, seed=3, execution=SerialPairs()), seed=3, n_jobs=2)
    try:
        searches.bayes_search(problem, n_calls=n_calls, n_initial_points=4)
    except KeyboardInterrupt:
        pass
    monkeypatch.undo()
    return proposed, trained, models


@pytest.mark.slow
def test_resumed_bayes_replays_the_run_and_trains_only_what_is_missing(tmp_path, monkeypatch):
    whole, whole_trained, models = fake_bayes_run(tmp_path / "whole", monkeypatch, n_calls=10)
    assert len(whole_trained) == len(set(whole_trained)) == 10
    assert models == [0, 0, 0, 0, 1, 1, 2, 2, 3, 3]  # 4 random points, then the GP: once each

    (tmp_path / "cut").mkdir()
    (tmp_path / "whole").mkdir(exist_ok=True)
    _, first, _ = fake_bayes_run(tmp_path / "cut", monkeypatch, n_calls=10, interrupt_after=3)
    again, resumed, models = fake_bayes_run(tmp_path / "cut", monkeypatch, n_calls=10)
    assert again == whole  # the same proposals, in the same order
    assert first + resumed == whole_trained  # each point trained once, in all
    assert models == [0, 1, 1, 2, 2, 3, 3]  # still 4 random points in all, not 4 more


# 3 -------------------------------------------------------------------------------------------

def test_cv_folds_are_stratified_and_each_trains_on_the_others(monkeypatch):
    from beans_tune.tuning.runner import Data, Job, TrialOptions, train_job

    y = np.arange(30) % 3
    x = np.arange(30, dtype=np.float32).reshape(30, 1, 1, 1)
    data = Data.make(beans_tune.images.Split(x[:21], y[:21]), beans_tune.images.Split(x[21:], y[21:]), cv=3, seed=0)
    assert data.folds() == ["cv1", "cv2", "cv3"]
    for k in range(3):  # 10 images a class over 3 folds: 3 or 4 of each class in each fold
        assert sorted(np.bincount(data.y[data.test_fold == k], minlength=3).tolist()) in ([3, 3, 4], [3, 4, 4],
                                                                                           [3, 3, 3], [4, 4, 4])
    seen = []

    def spy(hp, train, val, **kwargs):
        seen.append(np.concatenate([train.x, val.x]).ravel().tolist())
        return beans_tune.training.TrainResult(None, {}, 0.5, 1, 0.0)

    patch_train(monkeypatch, spy)
    for k in (1, 2, 3):
        train_job(Job({"layers": 1}, f"cv{k}"), beans_tune.hparams.HParams(), data, TrialOptions())
    for k, fitted in zip(range(3), seen):  # the other folds' images, the held-out tenth included
        assert sorted(fitted) == sorted(data.x[data.test_fold != k].ravel().tolist())


@pytest.mark.slow
def test_cv_resume_trains_exactly_the_missing_folds(data_dir, tmp_path, monkeypatch, capsys):
    out = tmp_path / "run"
    argv = ["--data-dir", str(data_dir), "--out", str(out), "--cv", "3", "--layers", "1,2", "--learning-rate", "1e-3",
            *TINY]
    count_trainings(monkeypatch, fail=lambda hp, n: KeyboardInterrupt() if n == 5 else None)
    assert tune_grid.main(argv) == 130
    first = rows(out)
    assert len(first) == 4
    monkeypatch.undo()
    calls = count_trainings(monkeypatch)
    assert tune_grid.main(argv) == 0
    final = rows(out)
    assert len(calls) == 2 + 1  # the two missing folds, then the final model
    assert sorted((r["layers"], r["fold"]) for r in final) == [
        (layers, f"cv{k}") for layers in ("1", "2") for k in (1, 2, 3)]
    assert final[:4] == first


# 4 -------------------------------------------------------------------------------------------

@pytest.mark.slow
def test_failed_trials_are_retried_only_with_retry_failed(data_dir, tmp_path, monkeypatch, capsys):
    out = tmp_path / "run"
    argv = ["--data-dir", str(data_dir), "--out", str(out), "--layers", "1,2", "--learning-rate", "1e-3", *TINY]
    count_trainings(monkeypatch, fail=lambda hp, n: RuntimeError("worker lost"))
    assert tune_grid.main(argv) == 1  # not bad input: a run that produced no result
    err = capsys.readouterr().err
    assert "every trial failed" in err and "--retry-failed" in err and len(err.strip().splitlines()) == 1
    assert [r["status"] for r in rows(out)] == ["failed", "failed"]

    monkeypatch.undo()
    calls = count_trainings(monkeypatch)
    assert tune_grid.main([*argv, "--trial-timeout", "600"]) == 1  # a new limit is the same search
    assert len(calls) == 0 and "--retry-failed" in capsys.readouterr().err
    assert tune_grid.main([*argv, "--retry-failed"]) == 0
    assert len(calls) == 2 + 1
    latest = store.TrialStore(out / "results.csv", ["layers"]).latest()
    assert [r["status"] for r in latest.values()] == ["ok", "ok"] and len(rows(out)) == 4
    assert "2 of them failed or timed out: training them again" in capsys.readouterr().out


@pytest.mark.slow
def test_a_diverged_trial_is_a_result_and_not_retried(data_dir, tmp_path, monkeypatch):
    out = tmp_path / "run"
    argv = ["--data-dir", str(data_dir), "--out", str(out), "--layers", "1,2", "--learning-rate", "1e-3", *TINY]
    real, calls = beans_tune.training.train, []

    def layers_two_diverges(hp, *args, **kwargs):
        calls.append(hp)
        if len(calls) == 3:
            raise KeyboardInterrupt  # in the final model: the search is unfinished
        result = real(hp, *args, **kwargs)
        if hp.layers == 2:
            result.status, result.val_accuracy = "nan", float("nan")
        return result

    patch_train(monkeypatch, layers_two_diverges)
    assert tune_grid.main(argv) == 130
    assert [r["status"] for r in rows(out)] == ["ok", "diverged"]
    monkeypatch.undo()
    calls = count_trainings(monkeypatch)
    assert tune_grid.main([*argv, "--retry-failed"]) == 0
    assert len(calls) == 1 and len(rows(out)) == 2  # only the final model trained


# 5 -------------------------------------------------------------------------------------------

def test_ranges_are_compared_exactly_on_resume(data_dir, tmp_path, capsys):
    out = tmp_path / "run"
    argv = ["--data-dir", str(data_dir), "--out", str(out), "--n-iter", "2", "--layers", "1:2", *TINY]
    assert tune_random.main([*argv, "--learning-rate", "1e-4:0.1"]) == 0
    capsys.readouterr()
    assert tune_random.main([*argv, "--learning-rate", "1e-4:0.10004"]) == 2
    assert "holds a different search (its space differ)" in capsys.readouterr().err
    manifest = json.loads((out / "search.json").read_text())
    assert manifest["space"]["learning_rate"] == {"low": 1e-4, "high": 0.1, "scale": "log"}


def test_a_folder_of_the_former_cosine_default_says_how_to_resume_it(data_dir, tmp_path, capsys):
    out = tmp_path / "run"
    argv = ["--data-dir", str(data_dir), "--out", str(out), "--n-iter", "2", "--layers", "1", *TINY]
    assert tune_random.main([*argv, "--schedule", "cosine"]) == 0
    before = (out / "results.csv").read_text()
    capsys.readouterr()
    assert tune_random.main(argv) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "add --schedule cosine" in err
    assert (out / "results.csv").read_text() == before
    assert tune_random.main([*argv, "--schedule", "cosine"]) == 0  # as it says: it resumes, finished


# 7 -------------------------------------------------------------------------------------------

def test_a_folder_in_use_is_refused_in_one_line(data_dir, tmp_path, capsys, monkeypatch):
    out = tmp_path / "run"
    calls = count_trainings(monkeypatch)
    with outfolder.claim(out):  # another run holds the folder
        assert tune_grid.main(["--data-dir", str(data_dir), "--out", str(out), "--layers", "1,2", *TINY]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "in use by another run" in err
    assert calls == [] and [p.name for p in out.iterdir()] == [".lock"]  # the holder's lock only


@pytest.mark.slow
def test_a_second_process_is_refused_while_the_first_runs(data_dir, tmp_path):
    out = tmp_path / "run"
    command = [sys.executable, str(ROOT / "tune_grid.py"), "--data-dir", str(data_dir), "--out", str(out),
               "--layers", "1,2", "--image-size", "8", "--epochs", "300", "--patience", "300", "--units", "4",
               "--batch-size", "4", "--decay", "0", "--learning-rate", "1e-3"]
    first = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 60
        while not (out / "search.json").exists() and time.time() < deadline:
            time.sleep(0.1)
        second = subprocess.run(command, capture_output=True, text=True, timeout=120)
    finally:
        first.kill()
        first.wait()
    assert second.returncode == 2 and "in use by another run" in second.stderr
    assert len(second.stderr.strip().splitlines()) == 1


# 8 -------------------------------------------------------------------------------------------

PROBE = """
import sys
import beans_tune.training
import tune_grid  # python -c in the project folder: its scripts import as modules
real = beans_tune.training.train
def train(*args, **kwargs):  # each trial reports the thread pools TensorFlow runs it with
    import tensorflow as tf
    threading = tf.config.threading
    print("threads", threading.get_intra_op_parallelism_threads(), threading.get_inter_op_parallelism_threads())
    return real(*args, **kwargs)
beans_tune.training.train = train
sys.exit(tune_grid.main(sys.argv[1:]))
"""


@pytest.mark.slow
def test_threads_per_trial_holds_in_the_main_process(data_dir, tmp_path):
    # a probe of TensorFlow's pools, not CPU time / wall time, which a busy or 1-core machine
    # keeps near 1 whether or not the limit holds; without the limit the probe reads "0 0",
    # TensorFlow's own choice (all cores): checked when this test was written, not on every run
    flag, pools = ["--threads-per-trial", "1"], "1 1"
    done = subprocess.run(
        [sys.executable, "-c", PROBE, "--data-dir", str(data_dir), "--out", str(tmp_path / "run"),
         "--layers", "1,2", "--learning-rate", "1e-3", *flag, *TINY],
        capture_output=True, text=True, timeout=300, cwd=ROOT,
        env={k: v for k, v in os.environ.items() if not k.startswith("TF_NUM_")})  # as a user runs it
    assert done.returncode == 0, done.stderr
    assert "not applied" not in done.stderr
    seen = [line.split(" ", 1)[1] for line in done.stdout.splitlines() if line.startswith("threads ")]
    assert seen == [pools] * 4  # the time estimate's training, 2 trials and the final model


@pytest.mark.slow
def test_threads_not_applicable_are_said(data_dir, tmp_path, capsys):
    import tensorflow as tf

    tf.constant(1.0) + 1  # TensorFlow runs in this (pytest's) process already
    assert tune_grid.main(["--data-dir", str(data_dir), "--out", str(tmp_path / "run"), "--layers", "1,2",
                           "--learning-rate", "1e-3", "--threads-per-trial", "1", *TINY]) == 0
    assert "--threads-per-trial 1 not applied" in capsys.readouterr().err


# 10 ------------------------------------------------------------------------------------------

class ScriptedOptimizer:
    """Proposes `points` in order, as the GP may on a small integer space (a point again)."""

    def __init__(self, points):
        self.points, self.Xi, self.yi, self.models = list(points), [], [], []

    def ask(self, n_points=None, strategy=None):
        return self.points[len(self.Xi)]

    def tell(self, points, values):
        self.Xi.extend(points)
        self.yi.extend(values)
        return self


@pytest.mark.slow
def test_bayes_never_trains_a_point_twice(data_dir, tmp_path, monkeypatch):
    out = tmp_path / "run"
    calls = count_trainings(monkeypatch)
    scripted = ScriptedOptimizer([[1], [2], [1], [3], [2]])
    monkeypatch.setattr(searches, "gp_optimizer", lambda *args: scripted)
    # 6 points, more than the 5 calls: the ask-and-tell loop runs, not the whole-space shortcut
    assert tune_bayes.main(["--data-dir", str(data_dir), "--out", str(out), "--n-calls", "5",
                            "--n-initial-points", "2", "--layers", "1:6", "--learning-rate", "1e-3", *TINY]) == 0
    assert [r["layers"] for r in rows(out)] == ["1", "2", "3"]  # 5 proposals, 3 distinct points
    assert len(calls) == 3 + 1  # and the final model
    assert scripted.Xi == [[1], [2], [1], [3], [2]]
    assert scripted.yi[2] == scripted.yi[0] and scripted.yi[4] == scripted.yi[1]  # told the stored score


# 11 ------------------------------------------------------------------------------------------

@pytest.mark.slow
def test_a_failing_plot_is_a_warning_after_the_final_model(data_dir, tmp_path, capsys, monkeypatch):
    def fails(*args):
        raise AssertionError  # skopt's plot_objective fails so on a dimension of one value

    monkeypatch.setattr(beans_tune.tuning.methods, "objective_figure", fails)
    out = tmp_path / "run"
    assert tune_bayes.main(["--data-dir", str(data_dir), "--out", str(out), "--n-calls", "4",
                            "--n-initial-points", "2", "--layers", "1:2", *TINY]) == 0
    assert capsys.readouterr().err.strip() == "tune_bayes.py: warning: objective.png not written (AssertionError)"
    assert (out / "best.json").exists() and (out / "model.keras").exists() and (out / "convergence.png").exists()


def test_a_range_holding_one_power_of_two_is_a_fixed_batch_size():
    dims, fixed = build_space({"batch_size": "20:40", "layers": "1:2"}, {}, allow_range=True)
    assert [d.name for d in dims] == ["layers"] and fixed == {"batch_size": 32}


@pytest.mark.slow
def test_any_figure_that_fails_costs_only_itself(data_dir, tmp_path, capsys, monkeypatch):
    from beans_tune.tuning import report

    def broken(*args):
        raise ValueError("cannot draw\nsecond line")

    monkeypatch.setattr(report, "plot_scores", broken)
    out = tmp_path / "run"
    assert tune_grid.main(["--data-dir", str(data_dir), "--out", str(out), "--layers", "1,2", "--learning-rate", "1e-3",
                           *TINY]) == 0
    err = capsys.readouterr().err.strip()
    assert err == "tune_grid.py: warning: val_accuracy.png not written (ValueError: cannot draw)"
    assert (out / "best.json").exists() and not (out / "val_accuracy.png").exists()


@pytest.mark.slow
def test_worker_ids_come_from_the_process_that_trained(data_dir, tmp_path):
    out = tmp_path / "run"
    assert tune_grid.main(["--data-dir", str(data_dir), "--out", str(out), "--layers", "1,2", "--learning-rate", "1e-3",
                           *TINY]) == 0
    assert {r["worker"].split(":")[1] for r in rows(out)} == {str(os.getpid())}


@pytest.mark.slow
def test_bayes_answers_a_repeated_proposal_from_the_store(tmp_path, monkeypatch):
    from beans_tune.tuning.space import parse_dim

    log = store.TrialStore(tmp_path / "results.csv", ["layers"])
    log.create()
    proposed, trained = [], []
    real_ask_tell = searches.ask_tell

    def spy(optimizer, evaluate, *args, **kwargs):
        return real_ask_tell(optimizer, lambda points: proposed.extend(p[0] for p in points) or evaluate(points),
                             *args, **kwargs)

    def stub(job, base, data, options):
        trained.append(job.params["layers"])
        return stub_row(job, 0.9 - abs(job.params["layers"] - 2) / 10)

    monkeypatch.setattr(searches, "ask_tell", spy)
    problem = searches.Problem((parse_dim("layers", "1:8"),), evaluator(log, stub))
    searches.bayes_search(problem, n_calls=7, n_initial_points=2)
    assert len(proposed) == 7 and len(set(proposed)) < 7, proposed  # the GP proposed a point again
    assert sorted(trained) == sorted(set(proposed))  # and each point was trained once
    assert [r["params"]["layers"] for r in log.rows()] == trained  # each stored once, as trained


def test_the_driver_trains_each_missing_training_once_and_stores_a_killer_as_failed(tmp_path, capsys):
    """The evaluate path: a candidate given twice in a batch trains once; one the store holds is
    answered from it (a failed one is trained again only with --retry-failed); a training whose
    Dask workers died (execution.Killed) is stored failed, named on stderr."""
    from beans_tune.tuning.execution import Killed

    log = store.TrialStore(tmp_path / "results.csv", ["layers"])
    log.create()
    log.record({"layers": 3}, "validation", float("nan"), 1.0, status="failed", message="an earlier run")
    log.record({"layers": 4}, "validation", 0.4, 1.0)

    class KillsLayersTwo(Execution):
        def run(self, fn, items, *data):
            for index, item in enumerate(items):
                yield index, Killed(2, "tcp://w:1") if item.params["layers"] == 2 else fn(item, *data)

    trained = []

    def train(job, base, data, options):
        trained.append(job.params["layers"])
        return stub_row(job, job.params["layers"] / 10)

    for retry in (False, True):
        evaluate = Evaluator(log, beans_tune.hparams.HParams(), runner.Data(None, None), runner.TrialOptions(), KillsLayersTwo(),
                             retry=retry, prog="tune_grid.py", train=train)
        found = evaluate([{"layers": 1}, {"layers": 2}, {"layers": 1}, {"layers": 3}, {"layers": 4}])
        assert [r["params"]["layers"] for r in found] == [1, 2, 1, 3, 4]
    assert trained == [1, 3]  # layers=1 once (then answered), 3 only with --retry-failed, 4 never
    assert [(r["params"]["layers"], r["status"]) for r in log.rows()] == [
        (3, "failed"), (4, "ok"), (1, "ok"), (2, "failed"), (2, "failed"), (3, "ok")]  # a killer retried too
    assert "worker died 2 times" in log.rows()[3]["message"] and log.rows()[3]["worker"] == "tcp://w:1"
    assert capsys.readouterr().err.count("layers=2 (fold validation) killed its Dask worker 2 times") == 2


def test_a_running_trial_shows_an_epoch_line_at_most_once_per_interval():
    """A trial of several minutes printed nothing between two progress lines."""
    now, printed = [0.0], []
    beat = runner.Heartbeat("layers=4", 60, out=printed.append, clock=lambda: now[0])
    for t, epoch in [(10, 1), (59.9, 2), (60, 3), (100, 4), (125, 5), (300, 6)]:
        now[0] = t
        beat(f"epoch {epoch}/6")
    assert printed == ["  running layers=4: epoch 3/6", "  running layers=4: epoch 5/6",
                       "  running layers=4: epoch 6/6"]


@pytest.mark.slow
def test_a_trial_names_its_configuration_and_fold_in_its_epoch_lines(tmp_path, capsys, monkeypatch):
    data = make_image_folder(tmp_path / "data", per_class=3, size=8)
    beans = beans_tune.images.Beans(data, image_size=8)
    splits, base = runner.Data(beans.train, beans.validation), beans_tune.hparams.HParams(epochs=2, batch_size=4)
    job = runner.Job({"units": 4, "layers": 1}, "seed7")
    runner.train_job(job, base, splits, runner.TrialOptions())
    assert "running" not in capsys.readouterr().out  # seconds, not a minute: no heartbeat

    row = runner.train_job(job, base, splits, runner.TrialOptions(heartbeat=1e-9))
    lines = capsys.readouterr().out.splitlines()
    assert [line.split("  loss")[0] for line in lines] == ["  running units=4 layers=1 [seed7]: epoch   1/2",
                                                          "  running units=4 layers=1 [seed7]: epoch   2/2"]
    assert (row["fold"], row["status"], row["epochs"]) == ("seed7", store.OK, 2)

    monkeypatch.setattr(runner, "on_dask_worker", lambda: True)  # its prints would stay on the worker
    row = runner.train_job(job, base, splits, runner.TrialOptions(heartbeat=1e-9))
    assert row["status"] == store.OK  # it trained, silently
    assert capsys.readouterr().out == ""


def test_an_estimator_used_outside_a_search_trains_without_a_heartbeat(monkeypatch):
    """scikit-learn used directly (no TrialOptions): no "running" lines in the user's output."""
    logs = []

    def spy(hp, train, val, **kwargs):
        logs.append(kwargs.get("log"))
        return beans_tune.training.TrainResult(None, {}, 0.5, hp.epochs, 0.0)

    patch_train(monkeypatch, spy)
    x, y = np.zeros((30, 8, 8, 3), np.float32), np.arange(30) % 3
    runner.BeansClassifier(epochs=1).fit(x, y)
    runner.BeansClassifier(epochs=1).fit(x, y, options=runner.TrialOptions())
    assert logs[0] is None and isinstance(logs[1], runner.Heartbeat)


def test_the_estimator_predicts_among_the_folders_classes(monkeypatch):
    seen = []

    def spy(hp, train, val, **kwargs):
        seen.append((train.num_classes, len(val), set(val.y)))
        return beans_tune.training.TrainResult(None, {}, 0.5, hp.epochs, 0.0)

    patch_train(monkeypatch, spy)
    x, y = np.zeros((20, 8, 8, 3), np.float32), np.arange(20) % 5
    estimator = runner.BeansClassifier(epochs=1).fit(x, y, classes=("ash", "birch", "cedar", "elm", "oak"))
    assert list(estimator.classes_) == [0, 1, 2, 3, 4]
    # a held-out tenth of 20 is 2 images; every one of the 5 classes needs one
    assert seen == [(5, 5, {0, 1, 2, 3, 4})]
