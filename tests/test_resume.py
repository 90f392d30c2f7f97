"""Searches survive interruption: resume without retraining, refuse a different search,
time out a trial that runs too long."""

import csv
import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import beans_tune.hparams
import beans_tune.images
import beans_tune.training
import tune_bayes
import tune_grid
import tune_random
from conftest import instant_train, patch_train

# The searches tune the BN model by default (test_the_searches_tune_the_bn_model_by_default);
# these tests are about the search machinery, which the cheaper baseline model exercises as well.
TINY = ["--image-size", "8", "--epochs", "1", "--units", "4", "--batch-size", "4", "--decay", "0", "--batch-norm", "false",
        "--augment", "false"]
ROOT = Path(__file__).resolve().parents[1]


def rows(out):
    with (out / "results.csv").open() as handle:
        return list(csv.DictReader(handle))


def count_trainings(monkeypatch, interrupt_at=None):
    """Counts beans_tune.training.train calls; raises KeyboardInterrupt (Ctrl-C) at call `interrupt_at`."""
    calls = []
    real = beans_tune.training.train

    def counting(*args, **kwargs):
        calls.append(args[0])
        if interrupt_at is not None and len(calls) == interrupt_at:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    patch_train(monkeypatch, counting)
    return calls


@pytest.mark.parametrize("script, argv", [
    (tune_grid, ["--learning-rate", "1e-3,3e-3", "--layers", "1,2"]),
    (tune_random, ["--n-iter", "4", "--learning-rate", "1e-4:1e-1", "--layers", "1:3"]),
    (tune_bayes, ["--n-calls", "4", "--n-initial-points", "2", "--learning-rate", "1e-4:1e-1", "--layers", "1:3"]),
])
@pytest.mark.slow
def test_ctrl_c_then_rerun_resumes_without_retraining(data_dir, tmp_path, monkeypatch, capsys, script, argv):
    out = tmp_path / "run"
    command = ["--data-dir", str(data_dir), "--out", str(out), *argv, *TINY]
    count_trainings(monkeypatch, interrupt_at=3)
    assert script.main(command) == 130
    printed = capsys.readouterr()
    assert "interrupted; 2 of 4 trainings are saved" in printed.out and "rank " in printed.out
    first = rows(out)
    assert len(first) == 2

    calls = count_trainings(monkeypatch)
    assert script.main(command) == 0
    printed = capsys.readouterr().out
    assert "resuming: 2 of 4 trainings" in printed
    final = rows(out)
    assert len(final) == 4 and final[:2] == first  # finished trials kept as they were
    assert len(calls) == 2 + 1  # the two missing trials, then the best configuration's retraining
    table = printed.split("rank ")[-1].splitlines()[2:6]
    fits = {float(line.split()[-2]) for line in table}
    assert fits == {round(float(r["fit_seconds"]), 1) for r in final}  # resumed rows keep their fit time
    searched = [k for k in final[0] if k in beans_tune.hparams.HPARAM_NAMES]
    assert len({tuple(r[k] for k in searched) for r in final}) == 4  # no trial ran twice
    best = json.loads((out / "best.json").read_text())
    # the fit times of both runs' trainings, not only this run's (search_seconds is this run's)
    assert best["resumed"] is True
    assert best["fit_seconds"] == pytest.approx(sum(float(r["fit_seconds"]) for r in final), abs=0.11)


@pytest.mark.slow
def test_ctrl_c_during_the_final_model_says_how_to_finish(data_dir, tmp_path, monkeypatch, capsys):
    out = tmp_path / "run"
    command = ["--data-dir", str(data_dir), "--out", str(out), "--layers", "1,2", "--learning-rate", "1e-3", *TINY]
    count_trainings(monkeypatch, interrupt_at=3)  # two trials, then the final model
    assert tune_grid.main(command) == 130
    printed = capsys.readouterr()
    assert "interrupted while training the final model; the search's trainings are saved in" in printed.out
    assert printed.err.strip() == "tune_grid.py: interrupted"
    assert len(rows(out)) == 2 and not (out / "best.json").exists()
    calls = count_trainings(monkeypatch)
    assert tune_grid.main(command) == 0
    assert len(calls) == 1 and (out / "best.json").exists()  # only the final model


@pytest.mark.parametrize("dropped_at", [1, 3])  # the first trial; the last, just before the final model
@pytest.mark.slow
def test_a_ctrl_c_that_python_dropped_still_stops_the_run(data_dir, tmp_path, monkeypatch, capsys, dropped_at):
    """A KeyboardInterrupt raised inside a weakref or GC callback is printed as "Exception
    ignored" and dropped (seen when Keras frees a model between trials): the run noticed none,
    trained the rest and read the test split. Now the next trial, or the final model, does not start."""
    fake, calls, evaluated = instant_train(beans_tune.training, []), [], []

    def train(hp, *args, **kwargs):
        calls.append(hp)
        if len(calls) == dropped_at:
            try:
                signal.raise_signal(signal.SIGINT)  # the script's handler runs, as on a real Ctrl-C
            except KeyboardInterrupt:
                pass  # ... and the exception is lost, as in a callback
        return fake(hp, *args, **kwargs)

    patch_train(monkeypatch, train)
    monkeypatch.setattr(beans_tune.training, "evaluate", lambda *a, **k: evaluated.append(a) or 0.5)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # Python's own, as a script starts with
    out = tmp_path / "run"
    command = ["--data-dir", str(data_dir), "--out", str(out), "--learning-rate", "1e-3,2e-3,3e-3", "--layers", "1", *TINY]
    assert tune_grid.main(command) == 130
    printed = capsys.readouterr()
    assert f"interrupted; {dropped_at} of 3 trainings are saved" in printed.out
    assert printed.err.strip() == "tune_grid.py: interrupted"
    assert len(calls) == len(rows(out)) == dropped_at and not evaluated and not (out / "best.json").exists()
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # given back after the run
    assert tune_grid.main(command) == 0 and len(evaluated) == 1  # a rerun resumes and finishes


def test_a_ctrl_c_that_tensorflow_turned_into_another_error_is_not_stored_as_a_failure(data_dir, tmp_path,
                                                                                       monkeypatch, capsys):
    """Ctrl-C inside TensorFlow can surface as a TypeError or an AssertionError: the training is
    not recorded 'failed' (a plain resume would never train it again); the run stops, and a
    rerun trains it."""
    fake, calls = instant_train(beans_tune.training, []), []

    def train(hp, *args, **kwargs):
        calls.append(hp)
        if len(calls) == 2:
            try:
                signal.raise_signal(signal.SIGINT)
            except KeyboardInterrupt:
                raise TypeError("Failed to convert elements of (None,) to Tensor") from None
        return fake(hp, *args, **kwargs)

    patch_train(monkeypatch, train)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    out = tmp_path / "run"
    command = ["--data-dir", str(data_dir), "--out", str(out), "--learning-rate", "1e-3,2e-3,3e-3", "--layers", "1", *TINY]
    assert tune_grid.main(command) == 130
    assert [r["status"] for r in rows(out)] == ["ok"]  # the interrupted training left no row
    assert tune_grid.main(command) == 0
    assert [r["status"] for r in rows(out)] == ["ok"] * 3 and len(calls) == 2 + 2 + 1  # it trained on rerun


@pytest.mark.slow
def test_resumed_random_search_draws_the_same_candidates(data_dir, tmp_path, monkeypatch, scored):
    argv = ["--data-dir", str(data_dir), "--n-iter", "4", "--learning-rate", "1e-4:1e-1", "--units", "4:64",
            "--seed", "3", "--image-size", "8", "--epochs", "1", "--batch-size", "4", "--decay", "0"]
    assert tune_random.main([*argv, "--out", str(tmp_path / "whole")]) == 0
    count_trainings(monkeypatch, interrupt_at=2)
    assert tune_random.main([*argv, "--out", str(tmp_path / "cut")]) == 130
    patch_train(monkeypatch, instant_train(beans_tune.training, []))  # no more interruptions
    assert tune_random.main([*argv, "--out", str(tmp_path / "cut")]) == 0

    def candidates(out):
        return sorted((r["learning_rate"], r["units"]) for r in rows(out))

    assert candidates(tmp_path / "cut") == candidates(tmp_path / "whole")


@pytest.mark.slow
def test_kill_9_mid_search_loses_only_running_trials(data_dir, tmp_path):
    out = tmp_path / "run"
    command = [sys.executable, str(ROOT / "tune_grid.py"), "--data-dir", str(data_dir), "--out", str(out),
               "--learning-rate", "1e-3,2e-3", "--layers", "1,2", "--image-size", "8", "--epochs", "2",
               "--units", "4", "--batch-size", "4", "--decay", "0", "--augment", "false", "--batch-norm", "false"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    deadline = time.time() + 120
    try:
        while time.time() < deadline:
            if (out / "results.csv").exists() and len(rows(out)) >= 2:
                break
            time.sleep(0.1)
        os.kill(process.pid, signal.SIGKILL)
    finally:
        process.wait()
    done = rows(out)
    assert 2 <= len(done) < 4

    rerun = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    final = rows(out)
    assert len(final) == 4 and final[:len(done)] == done
    # each trial trained in the rerun prints one progress line; the finished ones print none
    assert rerun.stdout.count("\ntrial ") + rerun.stdout.startswith("trial ") == 4 - len(done)
    assert len({(r["learning_rate"], r["layers"]) for r in final}) == 4


@pytest.mark.slow
def test_a_different_search_in_the_same_out_is_refused(data_dir, tmp_path, capsys, scored):
    out = tmp_path / "run"
    assert tune_grid.main(["--data-dir", str(data_dir), "--out", str(out), "--layers", "1,2", *TINY]) == 0
    before = (out / "results.csv").read_text()
    assert tune_random.main(["--data-dir", str(data_dir), "--out", str(out), "--n-iter", "2", *TINY]) == 2
    err = capsys.readouterr().err
    assert "holds a different search" in err and "--overwrite" in err and len(err.strip().splitlines()) == 1
    assert (out / "results.csv").read_text() == before
    assert tune_grid.main(["--data-dir", str(data_dir), "--out", str(out), "--layers", "1,3", *TINY]) == 2
    assert tune_random.main(["--data-dir", str(data_dir), "--out", str(out), "--n-iter", "2", "--overwrite",
                             *TINY]) == 0
    assert len(rows(out)) == 2
    assert tune_random.main(["--data-dir", str(data_dir), "--out", str(out), "--n-iter", "2", "--overwrite",
                             *TINY]) == 0
    assert len(rows(out)) == 2  # --overwrite starts afresh even for the same search


def test_search_json_fixes_only_what_differs_from_the_defaults(data_dir, tmp_path, scored):
    # so a hyperparameter added later with a default that changes nothing (dropout, 0) leaves every
    # folder written before it resumable: their search.json and this version's agree
    out = tmp_path / "run"
    assert tune_grid.main(["--data-dir", str(data_dir), "--out", str(out), "--layers", "1,2", *TINY]) == 0
    fixed = json.loads((out / "search.json").read_text())["fixed"]
    defaults = beans_tune.hparams.HParams().to_dict()
    assert fixed["units"] == 4 and "dropout" not in fixed
    assert all(defaults[name] != value for name, value in fixed.items()), fixed


@pytest.mark.parametrize("held", [None, 2, 4])  # no "format" (every folder before format 2), older, newer
@pytest.mark.slow
def test_a_search_of_another_format_is_refused_in_one_line(data_dir, tmp_path, capsys, scored, held):
    out = tmp_path / "run"
    argv = ["--data-dir", str(data_dir), "--out", str(out), "--layers", "1,2", *TINY]
    assert tune_grid.main(argv) == 0
    manifest = json.loads((out / "search.json").read_text())
    assert manifest["format"] == 3
    manifest.pop("format") if held is None else manifest.update(format=held)
    (out / "search.json").write_text(json.dumps(manifest))
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    capsys.readouterr()
    assert tune_grid.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"(format {held or 1}, this one writes 3)" in err and "--overwrite" in err, err
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before  # nothing touched
    assert tune_grid.main([*argv, "--overwrite"]) == 0
    assert json.loads((out / "search.json").read_text())["format"] == 3


@pytest.mark.slow
def test_finished_search_rerun_reprints_and_leaves_the_test_split_alone(data_dir, tmp_path, monkeypatch, capsys):
    out = tmp_path / "run"
    argv = ["--data-dir", str(data_dir), "--out", str(out), "--layers", "1,2", *TINY]
    assert tune_grid.main(argv) == 0
    first = capsys.readouterr().out
    best = (out / "best.json").read_text()
    model = (out / "model.keras").stat().st_mtime_ns
    calls = count_trainings(monkeypatch)
    splits = []
    real_split = beans_tune.images.Beans.split
    monkeypatch.setattr(beans_tune.images.Beans, "split", lambda self, name: splits.append(name) or real_split(self, name))
    assert tune_grid.main(argv) == 0
    again = capsys.readouterr().out
    assert len(calls) == 0 and "test" not in splits and len(rows(out)) == 4
    assert (out / "best.json").read_text() == best and (out / "model.keras").stat().st_mtime_ns == model
    assert "finished" in again and "not read again" in again
    stored_table = first.split("\nmodel ")[-1]
    assert stored_table.strip().splitlines()[2] in again  # the same test accuracy, reprinted


@pytest.mark.slow
def test_trial_timeout_stops_a_hanging_trial(data_dir, tmp_path, monkeypatch, capsys):
    real = beans_tune.training.train

    def layers_two_never_ends(hp, *args, **kwargs):
        if hp.layers == 2:  # far more epochs than the time-out allows
            hp = dataclasses.replace(hp, epochs=1000, patience=1000, batch_size=1)  # far past 10 s
        return real(hp, *args, **kwargs)

    patch_train(monkeypatch, layers_two_never_ends)
    out = tmp_path / "run"
    assert tune_grid.main(["--data-dir", str(data_dir), "--out", str(out), "--layers", "1,2", "--learning-rate",
                           "1e-3", "--trial-timeout", "10", *TINY]) == 0  # 10 s: one epoch, even on a busy machine
    status = {r["layers"]: r for r in rows(out)}
    assert status["2"]["status"] == "timeout" and "--trial-timeout" in status["2"]["message"]
    assert int(status["2"]["epochs"]) < 1000  # stopped part way, by the time-out
    assert status["1"]["status"] == "ok"
    assert "TIMEOUT" in capsys.readouterr().out


FINISHED = {}  # {file name: bytes} of a finished search's folder


@pytest.mark.parametrize("spoil, message", [
    (lambda out: ((out / "results.csv").unlink(), (out / "results.csv").mkdir()), "results.csv is not a file"),
    (lambda out: ((out / "model.keras").unlink(), (out / "model.keras").mkdir()), "model.keras is not a file"),
    (lambda out: (out / "best.json").write_text("[1, 2]"), "best.json is not a finished search's summary"),
    (lambda out: (out / "best.json").write_text('{"val_accuracy": "high"}'), "is not a finished search's summary"),
    (lambda out: edit_best(out, lambda best: best.pop("final_val_accuracy")), "is not a finished search's summary"),
    (lambda out: edit_best(out, lambda best: best.update(hparams=[])), "is not a finished search's summary"),
    (lambda out: edit_best(out, lambda best: best.update(test_images=-2)), "is not a finished search's summary"),
    (lambda out: edit_best(out, lambda best: best.update(trials=True)), "is not a finished search's summary"),
    (lambda out: (out / "results.csv").unlink(), "results.csv is gone"),
    (lambda out: (out / "results.csv").write_text(
        "".join((out / "results.csv").read_text().splitlines(keepends=True)[:-1])),
     "holds 3 of the 4 trainings best.json counts"),
    # a fold or a repeat lost, the configuration still there: counted by trainings, not trials
    (lambda out: edit_best(out, lambda best: best.update(trainings=best["trainings"] + 1)),
     "holds 4 of the 5 trainings best.json counts"),
    (lambda out: edit_best(out, lambda best: best.update(trials=5, trainings=4)),
     "holds 4 of the 5 trials best.json counts"),
])
def test_spoilt_state_files_of_a_finished_search_are_one_line(data_dir, tmp_path, capsys, scored, spoil, message):
    out = tmp_path / "run"
    argv = ["--data-dir", str(data_dir), "--out", str(out), "--layers", "1,2", *TINY]
    if not FINISHED:  # one finished search per test process, copied for each case
        assert tune_grid.main(argv) == 0
        FINISHED.update({p.name: p.read_bytes() for p in out.iterdir() if p.is_file()})
    else:
        out.mkdir()
        for name, content in FINISHED.items():
            (out / name).write_bytes(content)
        data = json.loads((out / "search.json").read_text())["data"]
        (out / "search.json").write_text((out / "search.json").read_text().replace(data, str(data_dir)))
    spoil(out)
    capsys.readouterr()
    assert tune_grid.main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    if message in ("results.csv is gone", "model.keras is not a file"):  # two cases, for the suite's time
        overwritten = tune_grid.main([*argv, "--overwrite"])  # starts afresh, where it can remove the files
        assert overwritten == (2 if "not a file" in message else 0)


def edit_best(out, change):
    best = json.loads((out / "best.json").read_text())
    change(best)
    (out / "best.json").write_text(json.dumps(best))


def test_the_folder_stays_locked_while_the_final_model_trains(data_dir, tmp_path, monkeypatch, scored):
    """A second run into the folder is refused until best.json is written: it cannot train its own
    final model and read the test split a second time."""
    from beans_tune.tuning import outfolder, run

    out, refused = tmp_path / "run", []
    real = run.train_final

    def train_final(*args, **kwargs):
        try:
            with outfolder.claim(out):
                pass
        except beans_tune.hparams.UsageError as err:
            refused.append(str(err))
        return real(*args, **kwargs)

    monkeypatch.setattr(run, "train_final", train_final)
    assert tune_grid.main(["--data-dir", str(data_dir), "--out", str(out), "--layers", "1,2", *TINY]) == 0
    assert len(refused) == 1 and "in use by another run" in refused[0]
