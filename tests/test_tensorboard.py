"""--tensorboard: a search as an HParams experiment, read back by a real TensorBoard server over
its HTTP API; epoch curves of the training scripts; histories from trial processes and resume."""

import contextlib
import csv
import json
import math
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

import beans_tune.training
import train_bn
import tune_grid
import tune_random
from conftest import is_trial, patch_train

TINY = ["--image-size", "8", "--epochs", "2", "--units", "4", "--batch-size", "4", "--decay", "0", "--batch-norm", "false",
        "--augment", "false"]
STATUSES = ["STATUS_UNKNOWN", "STATUS_SUCCESS", "STATUS_FAILURE", "STATUS_RUNNING"]


def rows(out):
    with (out / "results.csv").open() as handle:
        return list(csv.DictReader(handle))


def scalars(run_folder):
    """{tag: [(step, value), ...]} of the event files in one run folder."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run_folder), size_guidance={"tensors": 0})
    events.Reload()
    import tensorflow as tf

    found = {}
    for tag in events.Tags()["tensors"]:
        values = [(e.step, tf.make_ndarray(e.tensor_proto)) for e in events.Tensors(tag)]
        if all(v.ndim == 0 and v.dtype.kind == "f" for _, v in values):  # not the hparams plugin's records
            found[tag] = [(step, float(v)) for step, v in values]
    return found


def writer_pids(run_folder):
    """The process ids that wrote a run's event files (events.out.tfevents.<time>.<host>.<pid>...)."""
    return {int(f.name.split(".")[-3]) for f in Path(run_folder).glob("events.out.tfevents.*")}


@contextlib.contextmanager
def tensorboard_server(logdir):
    """A real `tensorboard` on 127.0.0.1 and a free port, in a subprocess; yields post(route, body)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen([sys.executable, "-m", "tensorboard.main", "--logdir", str(logdir), "--host",
                               "127.0.0.1", "--port", str(port)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)

    def post(route, body):
        request = urllib.request.Request(f"http://127.0.0.1:{port}/data/plugin/hparams/{route}",
                                         data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read())

    try:
        deadline = time.time() + 90
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/data/plugins_listing", timeout=5).read()
                break
            except (urllib.error.URLError, ConnectionError):
                if server.poll() is not None or time.time() > deadline:
                    raise AssertionError(f"tensorboard did not start: {server.stdout.read()[-2000:]!r}")
                time.sleep(0.3)
        yield post
    finally:
        server.terminate()
        server.wait(timeout=30)


@pytest.mark.slow
def test_a_search_is_an_hparams_experiment_served_by_tensorboard(data_dir, tmp_path, monkeypatch):
    out = tmp_path / "run"
    real = beans_tune.training.train

    def third_diverges(hp, *args, **kwargs):  # one failed session among the four
        result = real(hp, *args, **kwargs)
        if is_trial(kwargs) and hp.learning_rate == 3e-3 and hp.layers == 2:
            result.history["loss"][-1] = float("nan")
            result.status, result.val_accuracy = "nan", float("nan")
        return result

    patch_train(monkeypatch, third_diverges)
    assert tune_grid.main(["--data-dir", str(data_dir), "--out", str(out), "--learning-rate", "1e-3,3e-3",
                           "--layers", "1,2", "--tensorboard", *TINY]) == 0
    stored = rows(out)
    assert len(stored) == 4
    with tensorboard_server(out / "tensorboard") as post:
        experiment = post("experiment", {"experimentName": ""})
        groups = post("session_groups", {"experimentName": "", "allowedStatuses": STATUSES, "startIndex": 0,
                                         "sliceSize": 100, "colParams": []})
    domains = {h["name"]: h.get("domainDiscrete") for h in experiment["hparamInfos"]}
    assert domains == {"learning_rate": [1e-3, 3e-3], "layers": [1, 2]}
    assert "score/val_accuracy" in {m["name"]["tag"] for m in experiment["metricInfos"]}

    sessions = {s["name"]: (g["hparams"], s) for g in groups["sessionGroups"] for s in g["sessions"]}
    assert sorted(sessions) == ["trial-0001", "trial-0002", "trial-0003", "trial-0004"]
    for number, row in enumerate(stored, 1):
        hparams, session = sessions[f"trial-{number:04d}"]
        assert hparams == {"learning_rate": float(row["learning_rate"]), "layers": float(row["layers"])}
        metrics = {m["name"]["tag"]: m["value"] for m in session["metricValues"]}
        if row["status"] == "ok":
            assert session["status"] == "STATUS_SUCCESS"
            assert metrics["score/val_accuracy"] == pytest.approx(float(row["val_accuracy"]), abs=1e-6)
        else:
            assert row["status"] == "diverged" and session["status"] == "STATUS_FAILURE"
            assert "score/val_accuracy" not in metrics
    assert sum(row["status"] == "diverged" for row in stored) == 1
    # the curves: every epoch of every trial, and of the final model
    for number in range(1, 5):
        curves = scalars(out / "tensorboard" / f"trial-{number:04d}")
        assert [step for step, _ in curves["val_accuracy"]] == [1, 2]
    assert len(scalars(out / "tensorboard" / "final-model")["loss"]) >= 1


@pytest.mark.slow
def test_training_scripts_write_both_models_curves(data_dir, tmp_path):
    out = tmp_path / "bn"
    assert train_bn.main(["--data-dir", str(data_dir), "--out", str(out), "--compare", "--tensorboard",
                          "--image-size", "8", "--epochs", "3", "--patience", "3", "--units", "4", "--batch-size", "4"]) == 0
    for model in ("baseline", "bn"):
        history = list(csv.DictReader((out / model / "history.csv").open()))
        curves = scalars(out / "tensorboard" / model)
        assert [step for step, _ in curves["loss"]] == [1, 2, 3]
        assert [v for _, v in curves["val_accuracy"]] == pytest.approx([float(r["val_accuracy"]) for r in history])


@pytest.mark.slow
def test_histories_of_trials_in_other_processes_reach_the_client(data_dir, tmp_path):
    out = tmp_path / "run"
    assert tune_grid.main(["--data-dir", str(data_dir), "--out", str(out), "--learning-rate", "1e-3,3e-3",
                           "--layers", "1,2", "--n-jobs", "2", "--tensorboard", *TINY]) == 0
    stored = rows(out)
    assert {r["worker"].split(":")[-1] for r in stored} != {str(os.getpid())}  # trained elsewhere
    for number in range(1, 5):
        run = out / "tensorboard" / f"trial-{number:04d}"
        assert writer_pids(run) == {os.getpid()}  # written by the process that started the search
        assert len(scalars(run)["loss"]) == 2
    lines = [json.loads(line) for line in (out / "histories.jsonl").read_text().splitlines()]
    assert sorted(entry["trial"] for entry in lines) == [1, 2, 3, 4]


def test_domains_follow_the_space():
    from beans_tune import tensorboard_log
    from beans_tune.tuning.space import parse_dim

    def shown(name, spec):
        d = tensorboard_log.domain(parse_dim(name, spec))
        return type(d).__name__, getattr(d, "values", None) or (d.min_value, d.max_value)

    assert shown("units", "32:256") == ("IntInterval", (32, 256))
    assert shown("batch_size", "16:64") == ("Discrete", [16, 32, 64])
    assert shown("learning_rate", "3e-4:1e-2") == ("RealInterval", (3e-4, 1e-2))
    assert shown("batch_norm", "false,true") == ("Discrete", [False, True])


@pytest.mark.slow
def test_a_resumed_search_adds_its_new_trials_to_the_same_experiment(data_dir, tmp_path, monkeypatch):
    out = tmp_path / "run"
    command = ["--data-dir", str(data_dir), "--out", str(out), "--n-iter", "4", "--learning-rate", "1e-4:1e-1",
               "--layers", "1:3", "--tensorboard", *TINY]
    real, calls = beans_tune.training.train, []

    def interrupted(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    patch_train(monkeypatch, interrupted)
    assert tune_random.main(command) == 130
    board = out / "tensorboard"
    assert sorted(p.name for p in board.iterdir() if p.is_dir()) == ["trial-0001", "trial-0002"]
    before = {p.name: sorted(f.name for f in p.iterdir()) for p in board.iterdir() if p.is_dir()}
    monkeypatch.undo()
    assert tune_random.main(command) == 0
    runs = sorted(p.name for p in board.iterdir() if p.is_dir())
    assert runs == ["final-model", "trial-0001", "trial-0002", "trial-0003", "trial-0004"]
    assert all(sorted(f.name for f in (board / name).iterdir()) == files for name, files in before.items())
    assert len(list(board.glob("events.out.tfevents.*"))) == 1  # one experiment config
    scores = {number: scalars(board / f"trial-{number:04d}")["score/val_accuracy"][0][1] for number in range(1, 5)}
    assert scores == pytest.approx({n: float(r["val_accuracy"]) for n, r in enumerate(rows(out), 1)})


@pytest.mark.slow
def test_a_search_finished_without_tensorboard_gets_its_experiment_on_rerun(data_dir, tmp_path):
    out = tmp_path / "run"
    command = ["--data-dir", str(data_dir), "--out", str(out), "--learning-rate", "1e-3,3e-3", "--layers", "1", *TINY]
    assert tune_grid.main(command) == 0
    assert not (out / "tensorboard").exists()
    assert tune_grid.main([*command, "--tensorboard"]) == 0
    assert sorted(p.name for p in (out / "tensorboard").iterdir() if p.is_dir()) == ["trial-0001", "trial-0002"]
    assert all(math.isfinite(v) for _, v in scalars(out / "tensorboard" / "trial-0001")["loss"])


def test_without_the_tensorboard_package_the_flag_is_one_line(data_dir, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorboard", None)  # import tensorboard now raises ImportError
    out = tmp_path / "run"
    assert tune_random.main(["--data-dir", str(data_dir), "--out", str(out), "--tensorboard", *TINY]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["tune_random.py: error: --tensorboard needs the tensorboard package: pip install tensorboard"]
    assert not out.exists()


@pytest.mark.slow
def test_a_tensorboard_failure_costs_no_result(data_dir, tmp_path, monkeypatch, capsys):
    from beans_tune import tensorboard_log

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(tensorboard_log, "write_curves", broken)
    monkeypatch.setattr(tensorboard_log, "write_session", broken)
    out = tmp_path / "run"
    assert tune_grid.main(["--data-dir", str(data_dir), "--out", str(out), "--learning-rate", "1e-3,3e-3",
                           "--layers", "1", "--tensorboard", *TINY]) == 0
    assert (out / "model.keras").exists() and (out / "best.json").exists() and (out / "val_accuracy.png").exists()
    warnings = capsys.readouterr().err.strip().splitlines()
    assert warnings and all(w == "tune_grid.py: warning: TensorBoard events not written (OSError: disk full)"
                            for w in warnings)
    out = tmp_path / "bn"
    assert train_bn.main(["--data-dir", str(data_dir), "--out", str(out), "--tensorboard", "--image-size", "8",
                          "--epochs", "1", "--units", "4", "--batch-size", "4"]) == 0
    assert (out / "model.keras").exists() and (out / "curves.png").exists()
    assert capsys.readouterr().err.strip() == "train_bn.py: warning: TensorBoard events not written (OSError: disk full)"


def test_a_file_where_the_tensorboard_folder_goes_is_refused_before_training(data_dir, tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    (out / "tensorboard").write_text("not a folder")
    assert tune_random.main(["--data-dir", str(data_dir), "--out", str(out), "--tensorboard", *TINY]) == 2
    assert capsys.readouterr().err.strip() == (f"tune_random.py: error: --tensorboard writes into {out / 'tensorboard'}, "
                                               "which is a file")
    assert sorted(p.name for p in out.iterdir()) == ["tensorboard"]


def test_a_cut_history_line_loses_only_itself(tmp_path):
    from beans_tune.tuning.store import TrialStore

    store = TrialStore(tmp_path / "results.csv", ["units"])
    store.create()
    store.record({"units": 1}, "validation", 0.5, 1.0, history={"loss": [1.0]})
    store.record({"units": 2}, "validation", 0.6, 1.0, history={"loss": [2.0]})
    text = (tmp_path / "histories.jsonl").read_bytes()
    (tmp_path / "histories.jsonl").write_bytes(text[:-10])  # a crash in the middle of trial 2's line
    store.record({"units": 3}, "validation", 0.7, 1.0, history={"loss": [3.0]})
    assert store.histories() == {1: {"loss": [1.0]}, 3: {"loss": [3.0]}}


@pytest.mark.slow
def test_curves_that_cannot_be_kept_are_a_warning_and_the_search_goes_on(data_dir, tmp_path, capsys):
    import tune_bayes

    out = tmp_path / "run"
    (out / "histories.jsonl").mkdir(parents=True)
    assert tune_bayes.main(["--data-dir", str(data_dir), "--out", str(out), "--n-calls", "2", "--n-initial-points",
                            "2", "--learning-rate", "1e-3:1e-2", "--layers", "1", *TINY]) == 0
    assert len(rows(out)) == 2 and (out / "best.json").exists()
    err = capsys.readouterr().err
    assert err.count("curves not kept") == 2


def test_a_failed_attempt_is_a_group_of_its_own_and_sessions_are_staged_outside_the_logdir(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import metadata

    from beans_tune import tensorboard_log
    from beans_tune.tuning.space import parse_dim

    logdir = tmp_path / "tensorboard"
    (tmp_path / tensorboard_log.STAGING / "trial-0009-left").mkdir(parents=True)  # an interrupted write
    failed = {"params": {"layers": 1}, "val_accuracy": float("nan"), "epochs": 3, "status": "timeout"}
    retried = {"params": {"layers": 1}, "val_accuracy": 0.7, "epochs": 5, "status": "ok"}
    assert tensorboard_log.write_search(logdir, [parse_dim("layers", "1,2")], [], [failed, retried], {}) == 2
    assert not (tmp_path / tensorboard_log.STAGING).exists()
    assert sorted(p.name for p in logdir.iterdir() if p.is_dir()) == ["trial-0001", "trial-0002"]

    def group(run):
        events = EventAccumulator(str(logdir / run))
        events.Reload()
        content = events.SummaryMetadata(metadata.SESSION_START_INFO_TAG).plugin_data.content
        return metadata.parse_session_start_info_plugin_data(content).group_name

    assert group("trial-0002") == "layers=1" and group("trial-0001") == "layers=1 (trial-0001, timeout)"
    umask = os.umask(0)
    os.umask(umask)
    assert (logdir / "trial-0001").stat().st_mode & 0o777 == 0o777 & ~umask


def test_a_run_refused_before_training_writes_no_tensorboard_files(data_dir, tmp_path, capsys):
    """--tensorboard's experiment is written only once every check has passed: a refused run would
    otherwise leave an experiment that a later search in the folder keeps."""
    import tune_grid

    out = tmp_path / "run"
    assert tune_grid.main(["--data-dir", str(data_dir), "--out", str(out), "--learning-rate", "0.01,0.02",
                           "--layers", "1", "--tensorboard", "--cv", "40", *TINY]) == 2
    assert "--cv 40" in capsys.readouterr().err and not out.exists()
