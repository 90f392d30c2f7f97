"""Trials on a Dask cluster: a LocalCluster of 2 worker processes, on loopback only."""

import csv

import pytest

import tune_bayes
import tune_grid

distributed = pytest.importorskip("distributed")

TINY = ["--image-size", "8", "--epochs", "1", "--units", "4", "--batch-size", "4", "--decay", "0"]


@pytest.fixture(scope="module")
def cluster():
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                                  dashboard_address=None, worker_dashboard_address=None) as local:
        yield local


def rows(out):
    with (out / "results.csv").open() as handle:
        return list(csv.DictReader(handle))


def test_grid_on_two_workers_matches_a_serial_run(data_dir, tmp_path, cluster, capsys):
    argv = ["--data-dir", str(data_dir), "--learning-rate", "1e-3,1e-2", "--layers", "1,2", *TINY]
    assert tune_grid.main([*argv, "--out", str(tmp_path / "serial")]) == 0
    assert tune_grid.main([*argv, "--out", str(tmp_path / "dask"), "--scheduler", cluster.scheduler_address]) == 0
    printed = capsys.readouterr().out
    assert "Dask at tcp://127.0.0.1" in printed and "trial 4/4" in printed

    def trials(out):
        return sorted((r["learning_rate"], r["layers"], r["fold"], r["status"]) for r in rows(out))

    # the same four trials, all scored; the scores themselves may differ by an image or two of
    # the 12 here, as TensorFlow's CPU kernels are not bit-reproducible across processes
    assert trials(tmp_path / "dask") == trials(tmp_path / "serial")
    assert all(r["status"] == "ok" for r in rows(tmp_path / "dask"))
    workers = {r["worker"] for r in rows(tmp_path / "dask")}
    assert len(workers) >= 2  # ran in at least two worker processes
    serial_worker = {r["worker"] for r in rows(tmp_path / "serial")}
    assert not workers & serial_worker


def test_bayes_batches_run_on_the_cluster(data_dir, tmp_path, cluster):
    out = tmp_path / "run"
    assert tune_bayes.main(["--data-dir", str(data_dir), "--out", str(out), "--scheduler",
                            cluster.scheduler_address, "--n-calls", "4", "--n-initial-points", "2",
                            "--layers", "1:3", *TINY]) == 0
    assert len(rows(out)) == 4 and len({r["worker"] for r in rows(out)}) >= 2


def test_unreachable_scheduler_is_one_line(data_dir, tmp_path, capsys):
    assert tune_grid.main(["--data-dir", str(data_dir), "--out", str(tmp_path / "run"),
                           "--scheduler", "tcp://127.0.0.1:9", "--layers", "1,2", *TINY]) == 2
    err = capsys.readouterr().err
    assert "cannot reach a Dask scheduler at tcp://127.0.0.1:9" in err and len(err.strip().splitlines()) == 1


def test_a_worker_killed_mid_trial_costs_only_that_trial(data_dir, tmp_path):
    import os
    import signal
    import threading
    import time

    out = tmp_path / "run"
    argv = ["--data-dir", str(data_dir), "--out", str(out), "--learning-rate", "1e-3,2e-3", "--layers", "1,2",
            "--image-size", "8", "--epochs", "400", "--patience", "400", "--units", "4", "--batch-size", "4",
            "--decay", "0"]
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                                  dashboard_address=None, worker_dashboard_address=None) as local:
        result = {}
        search = threading.Thread(target=lambda: result.setdefault(
            "code", tune_grid.main([*argv, "--scheduler", local.scheduler_address])))
        search.start()
        with distributed.Client(local) as client:
            deadline = time.time() + 120
            while time.time() < deadline and not any(client.processing().values()):
                time.sleep(0.2)
            time.sleep(2)  # well inside a trial of 400 epochs
            busy = next(address for address, tasks in client.processing().items() if tasks)
            pid = client.run(os.getpid, workers=[busy])[busy]
            os.kill(pid, signal.SIGKILL)
        search.join(timeout=300)
    assert result.get("code") == 0
    done = rows(out)
    assert len(done) == 4 and all(r["status"] == "ok" for r in done)  # the killed trial ran again elsewhere
    assert str(pid) not in {r["worker"].split(":")[1] for r in done}


def test_one_worker_thread_still_runs_every_trial_on_the_cluster(data_dir, tmp_path):
    import os

    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=True, host="127.0.0.1",
                                  dashboard_address=None, worker_dashboard_address=None) as local:
        for script, argv, trials in ((tune_grid, ["--layers", "1,2", "--learning-rate", "1e-3"], 2),
                                     (tune_bayes, ["--layers", "1:3", "--n-calls", "3", "--n-initial-points", "2"], 3)):
            out = tmp_path / script.__name__
            assert script.main(["--data-dir", str(data_dir), "--out", str(out), "--scheduler",
                                local.scheduler_address, *argv, *TINY]) == 0
            pids = {r["worker"].split(":")[1] for r in rows(out)}
            assert len(rows(out)) == trials and str(os.getpid()) not in pids and len(pids) == 1


def test_refine_rounds_on_the_cluster_see_every_row_of_the_round(data_dir, tmp_path, cluster, capsys):
    import tune_random

    out = tmp_path / "run"
    assert tune_random.main(["--data-dir", str(data_dir), "--out", str(out), "--scheduler", cluster.scheduler_address,
                             "--n-iter", "2", "--refine", "1", "--layers", "1:3", *TINY]) == 0
    printed = capsys.readouterr().out
    first_round = printed.split("round 1/2: best of 2")[1].split("round 2/2 ranges")[0]
    table = [line for line in first_round.splitlines()[3:] if line.strip()]
    assert len(table) == 2, first_round  # rows relayed from the workers arrive before the next round
