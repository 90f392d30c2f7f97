"""Trials on a Dask cluster: a LocalCluster of 2 worker processes, on loopback only."""

import csv
import sys

import pytest

import tune_bayes
import tune_grid

distributed = pytest.importorskip("distributed")

# The searches tune the BN model by default (test_the_searches_tune_the_bn_model_by_default);
# these tests are about the search machinery, which the cheaper baseline model exercises as well.
TINY = ["--image-size", "8", "--epochs", "1", "--units", "4", "--batch-size", "4", "--decay", "0", "--batch-norm", "false",
        "--augment", "false"]


@pytest.fixture(scope="module")
def cluster():
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                                  dashboard_address=None, worker_dashboard_address=None) as local:
        yield local


def rows(out):
    with (out / "results.csv").open() as handle:
        return list(csv.DictReader(handle))


@pytest.mark.slow
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


@pytest.mark.slow
def test_bayes_batches_run_on_the_cluster(data_dir, tmp_path, cluster):
    out = tmp_path / "run"
    assert tune_bayes.main(["--data-dir", str(data_dir), "--out", str(out), "--scheduler",
                            cluster.scheduler_address, "--n-calls", "4", "--n-initial-points", "2",
                            "--layers", "1:3", *TINY]) == 0
    assert len(rows(out)) == 4 and len({r["worker"] for r in rows(out)}) >= 2


def test_unreachable_scheduler_is_one_line(data_dir, tmp_path, capsys):
    assert tune_grid.main(["--data-dir", str(data_dir), "--out", str(tmp_path / "run"),
                           "--scheduler", "tcp://127.0.0.1:9", "--connect-timeout", "2", "--layers", "1,2", *TINY]) == 2
    err = capsys.readouterr().err
    assert "cannot reach a Dask scheduler at tcp://127.0.0.1:9" in err and len(err.strip().splitlines()) == 1


def search_and_kill_a_busy_worker(argv, n_workers):
    """Runs tune_grid on a fresh LocalCluster and SIGKILLs the worker that holds a trial of 200
    epochs, as soon as the scheduler has given it one; returns (the search's exit code, the
    killed worker's pid)."""
    import os
    import signal
    import threading
    import time

    with distributed.LocalCluster(n_workers=n_workers, threads_per_worker=1, processes=True, host="127.0.0.1",
                                  dashboard_address=None, worker_dashboard_address=None) as local:
        result = {}
        search = threading.Thread(target=lambda: result.setdefault(
            "code", tune_grid.main([*argv, "--scheduler", local.scheduler_address])))
        search.start()
        with distributed.Client(local) as client:
            deadline = time.time() + 120
            def training(tasks):  # a trial's task, not the data the workers hold
                return any(str(key).startswith("train_job") for key in tasks)

            while time.time() < deadline and not any(training(t) for t in client.processing().values()):
                time.sleep(0.2)
            busy = next(address for address, tasks in client.processing().items() if training(tasks))
            pid = client.run(os.getpid, workers=[busy])[busy]
            os.kill(pid, signal.SIGKILL)
        search.join(timeout=300)
    return result.get("code"), pid


# long trials, a short final model; run in graph mode (the graph_mode fixture), where 200 epochs of
# 12 images take seconds (eager steps, the suite's default, would take a minute)
LONG = [*TINY, "--epochs", "200", "--patience", "200", "--final-epochs", "1"]


def a_cluster_where_two_layers_kill_the_worker(allowed_failures):
    """A LocalCluster on which any training with layers=2 kills its worker process (a plugin, so
    that the workers the nannies restart do it too)."""
    import dask

    class KillOnTwoLayers(distributed.WorkerPlugin):  # defined here: pickled by value
        def setup(self, worker):
            import os

            import beans_tune.training

            real = beans_tune.training.train

            def train(hp, *args, **kwargs):
                if hp.layers == 2:
                    os._exit(1)
                return real(hp, *args, **kwargs)

            beans_tune.training.train = train

    with dask.config.set({"distributed.scheduler.allowed-failures": allowed_failures}):
        local = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                                         dashboard_address=None, worker_dashboard_address=None)
    with distributed.Client(local) as client:
        client.register_plugin(KillOnTwoLayers())
    return local


def run_bounded(main, argv, seconds=240):
    """main(argv) in a thread; None if it has not returned after `seconds` (a hang)."""
    import threading

    result = {}
    thread = threading.Thread(target=lambda: result.setdefault("code", main(argv)), daemon=True)
    thread.start()
    thread.join(seconds)
    return result.get("code")


@pytest.mark.slow
def test_a_training_that_kills_its_workers_is_recorded_failed(data_dir, tmp_path, capsys):
    # every search trains through one path (tuning.evaluate), whose handling of a killer
    # test_search_core.py checks for each case, and test_a_training_blamed_with_a_killer_runs_again_alone
    # the rerun of what Dask blames; here they meet real KilledWorkers, in a Bayesian search
    script, argv = tune_bayes, ["--layers", "1:3", "--learning-rate", "1e-3", "--n-calls", "3", "--n-initial-points", "2"]
    out = tmp_path / "run"
    with a_cluster_where_two_layers_kill_the_worker(allowed_failures=0) as local:
        code = run_bounded(script.main, ["--data-dir", str(data_dir), "--out", str(out), "--scheduler",
                                         local.scheduler_address, "--connect-timeout", "120", *argv, *TINY])
    assert code == 0  # not None: the search did not hang
    by_layers = {r["layers"]: r for r in rows(out)}
    assert len(rows(out)) == 3 and set(by_layers) == {"1", "2", "3"}  # each trained once
    assert by_layers["2"]["status"] == "failed" and "worker died 1 time while" in by_layers["2"]["message"]
    assert by_layers["1"]["status"] == by_layers["3"]["status"] == "ok"
    assert "layers=2 (fold validation) killed its Dask worker 1 time:" in capsys.readouterr().err


def test_a_training_blamed_with_a_killer_runs_again_alone(monkeypatch):
    """Dask raises KilledWorker for every task a dying worker held: here trainings 0 (innocent)
    and 1 (the killer) are both blamed in the first pass; each runs again alone, after the
    others, and only the one that kills its worker alone is reported Killed."""
    from beans_tune.tuning import execution

    widths = []

    def window(self, fn, queue, held, width):
        queue = list(queue)  # an iterator: read as the window hands trainings out
        widths.append((width, [index for index, _ in queue]))
        for index, item in queue:
            blamed = item == "killer" or (item == "innocent" and width > 1)
            yield index, execution.Killed(2, "tcp://w:1") if blamed else f"row of {item}"

    monkeypatch.setattr(execution.Execution, "_window", window)
    monkeypatch.setattr(execution.Execution, "hold", lambda self, value: value)
    cluster = execution.Execution(n_jobs=2, client=object())
    found = list(cluster.run(None, ["innocent", "killer", "other"]))
    assert found == [(2, "row of other"), (0, "row of innocent"), (1, execution.Killed(2, "tcp://w:1"))]
    assert widths == [(2, [0, 1, 2]), (1, [0]), (1, [1])]  # at most n_jobs at once; each suspect alone


def test_no_more_trainings_run_at_once_than_asked(cluster):
    """Execution.run keeps at most n_jobs tasks on the cluster: with 1 on a cluster of two
    worker threads, no two tasks overlap in time (none waits on a worker beside another)."""
    import time

    from beans_tune.tuning.execution import Execution

    def span(item):
        start = time.time()
        time.sleep(0.3)
        return start, time.time()

    with distributed.Client(cluster) as client:
        spans = sorted(result for _, result in Execution(n_jobs=1, client=client).run(span, range(4)))
    assert len(spans) == 4
    assert all(later[0] >= earlier[1] for earlier, later in zip(spans, spans[1:]))  # one at a time


def test_a_cluster_reads_each_training_when_it_hands_it_out(cluster):
    """--prune's bar is made as a training is handed out: with one at a time, after the result
    before it was taken (Execution.run reads its items lazily)."""
    from beans_tune.tuning.execution import Execution

    events = []

    def items():
        for k in range(3):
            events.append(f"made {k}")
            yield k

    with distributed.Client(cluster) as client:
        for index, _ in Execution(n_jobs=1, client=client).run(abs, items()):
            events.append(f"took {index}")
    assert events == ["made 0", "took 0", "made 1", "took 1", "made 2", "took 2"]


@pytest.mark.slow
def test_one_worker_thread_still_runs_every_trial_on_the_cluster(data_dir, tmp_path):
    import os

    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=True, host="127.0.0.1",
                                  dashboard_address=None, worker_dashboard_address=None) as local:
        for script, argv, trials in ((tune_grid, ["--layers", "1,2", "--learning-rate", "1e-3"], 2),):
            out = tmp_path / script.__name__
            assert script.main(["--data-dir", str(data_dir), "--out", str(out), "--scheduler",
                                local.scheduler_address, *argv, *TINY]) == 0
            pids = {r["worker"].split(":")[1] for r in rows(out)}
            assert len(rows(out)) == trials and str(os.getpid()) not in pids and len(pids) == 1


@pytest.mark.slow
def test_refine_rounds_on_the_cluster_see_every_row_of_the_round(data_dir, tmp_path, cluster, capsys):
    import tune_random

    out = tmp_path / "run"
    assert tune_random.main(["--data-dir", str(data_dir), "--out", str(out), "--scheduler", cluster.scheduler_address,
                             "--n-iter", "2", "--refine", "1", "--layers", "1:3", *TINY]) == 0
    printed = capsys.readouterr().out
    first_round = printed.split("round 1/2: best of 2")[1].split("round 2/2 ranges")[0]
    table = [line for line in first_round.splitlines() if line.split()[:1] in (["1"], ["2"])]
    assert len(table) == 2, first_round  # rows relayed from the workers arrive before the next round
    assert "best vs runner-up" in first_round.split(table[-1])[1], first_round  # then the separation line


# --- a cluster that cannot serve the search ends in one line ----------------------------------

ROOT = __import__("pathlib").Path(__file__).resolve().parents[1]


def start(args, cwd, env_path=None):
    import os
    import subprocess

    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    if env_path:
        env["PYTHONPATH"] = env_path
    return subprocess.Popen(args, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def free_port():
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def bare_scheduler(tmp_path):
    """A scheduler started outside the project, without it on its path, as docs/dask.md warns."""
    import time

    port = free_port()
    # the interpreter running the tests, not a `dask` found on PATH (a virtual environment's
    # python runs the suite without the environment activated)
    scheduler, worker = ([sys.executable, "-m", f"distributed.cli.dask_{role}"] for role in ("scheduler", "worker"))
    processes = [start([*scheduler, "--host", "127.0.0.1", "--port", str(port),
                        "--dashboard-address", "127.0.0.1:0"], cwd=tmp_path)]
    address = f"tcp://127.0.0.1:{port}"
    deadline = time.time() + 30
    while time.time() < deadline:
        try:
            with distributed.Client(address, timeout=2):
                break
        except OSError:
            time.sleep(0.5)
    yield address, lambda: processes.append(start(
        [*worker, address, "--host", "127.0.0.1", "--nthreads", "1", "--dashboard-address", "127.0.0.1:0"],
        cwd=ROOT, env_path=str(ROOT)))
    for process in processes:
        process.kill()
        process.wait()


def test_a_cluster_without_workers_is_one_line(data_dir, tmp_path, capsys, bare_scheduler):
    address, _ = bare_scheduler
    out = tmp_path / "run"
    assert run_bounded(tune_grid.main, ["--data-dir", str(data_dir), "--out", str(out), "--scheduler", address,
                                        "--connect-timeout", "2", "--layers", "1,2", *TINY]) == 2
    err = capsys.readouterr().err.strip()
    assert err.endswith("the Dask cluster has no worker after 2s (--connect-timeout)") and len(err.splitlines()) == 1
    assert not out.exists()


def test_a_scheduler_that_cannot_import_the_project_is_one_line(data_dir, tmp_path, capsys, bare_scheduler,
                                                                 monkeypatch):
    """A cluster started where the package is not installed: the probe names the module it could
    not import (here one that exists nowhere, as the package does not on such a cluster)."""
    from beans_tune.tuning import execution

    address, add_worker = bare_scheduler
    add_worker()
    monkeypatch.setattr(execution, "PROJECT_MODULES", ("beans_tune_installed_nowhere",))
    out = tmp_path / "run"
    assert tune_grid.main(["--data-dir", str(data_dir), "--out", str(out), "--scheduler", address,
                           "--connect-timeout", "30", "--layers", "1,2", *TINY]) == 2
    err = capsys.readouterr().err.strip()
    assert "the Dask scheduler cannot import 'beans_tune_installed_nowhere'" in err and "pip install ." in err
    assert len(err.splitlines()) == 1 and not out.exists()


# --- TLS: the way to listen beyond loopback ----------------------------------------------------

def make_certificates(folder, name="cluster"):
    """A self-signed CA and one certificate it signs (for 127.0.0.1), as PEM files."""
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.timezone.utc)

    def certificate(subject, issuer, key, signing_key, ca):
        builder = (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer).public_key(key.public_key())
                   .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
                   .not_valid_after(now + datetime.timedelta(days=1))
                   .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
        if not ca:
            import ipaddress

            builder = builder.add_extension(x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]), critical=False)
        return builder.sign(signing_key, hashes.SHA256())

    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"{name} CA")])
    ca = certificate(ca_name, ca_name, ca_key, ca_key, True)
    cert = certificate(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]), ca_name, key, ca_key, False)
    paths = {k: folder / f"{name}-{k}.pem" for k in ("ca", "cert", "key")}
    paths["ca"].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths["cert"].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths["key"].write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))
    return {k: str(v) for k, v in paths.items()}


def client_certificates(paths):
    """Dask's configuration of a client's TLS (distributed.comm.tls.*), or none."""
    import dask

    if paths is None:
        return dask.config.set({"distributed.comm.require-encryption": None})
    return dask.config.set({"distributed.comm.tls.ca-file": paths["ca"], "distributed.comm.tls.client.cert": paths["cert"],
                            "distributed.comm.tls.client.key": paths["key"], "distributed.comm.require-encryption": True})


@pytest.mark.slow
def test_a_tls_cluster_serves_only_holders_of_its_certificates(data_dir, tmp_path, capsys):
    from distributed.security import Security

    own, stranger = make_certificates(tmp_path), make_certificates(tmp_path, "stranger")
    security = Security(tls_ca_file=own["ca"], tls_scheduler_cert=own["cert"], tls_scheduler_key=own["key"],
                        tls_worker_cert=own["cert"], tls_worker_key=own["key"], tls_client_cert=own["cert"],
                        tls_client_key=own["key"], require_encryption=True)
    argv = ["--data-dir", str(data_dir), "--layers", "1,2", "--learning-rate", "1e-3", "--connect-timeout", "5", *TINY]
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=True, host="127.0.0.1",
                                  protocol="tls://", security=security, dashboard_address=None,
                                  worker_dashboard_address=None) as local:
        address = local.scheduler_address
        assert address.startswith("tls://127.0.0.1:")
        with client_certificates(own):  # Dask's own configuration, as docs/dask.md shows
            assert tune_grid.main([*argv, "--out", str(tmp_path / "ok"), "--scheduler", address]) == 0
        assert len(rows(tmp_path / "ok")) == 2
        capsys.readouterr()
        for name, held in (("none", None), ("other", stranger)):
            with client_certificates(held):
                assert tune_grid.main([*argv, "--out", str(tmp_path / name), "--scheduler", address]) == 2
            err = capsys.readouterr().err.strip()
            assert "cannot reach a Dask scheduler at tls://127.0.0.1" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "none").exists() and not (tmp_path / "other").exists()


@pytest.mark.slow
def test_a_cluster_whose_only_worker_dies_still_finishes_the_search(data_dir, tmp_path, graph_mode):
    """A worker killed mid-trial costs only that trial: the nanny restarts it, the data held on it
    are computed again, the trial trains again there, the finished one is not trained again."""
    out = tmp_path / "run"
    code, pid = search_and_kill_a_busy_worker(
        ["--data-dir", str(data_dir), "--out", str(out), "--layers", "1,2", "--learning-rate", "1e-3", *LONG],
        n_workers=1)
    assert code == 0
    done = rows(out)
    assert len(done) == 2 and all(r["status"] == "ok" for r in done)
    assert str(pid) not in {r["worker"].split(":")[1] for r in done}


@pytest.mark.slow
def test_a_cluster_left_without_workers_ends_the_search_in_one_line(data_dir, tmp_path, capsys, graph_mode):
    import threading
    import time

    out = tmp_path / "run"
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=True, host="127.0.0.1",
                                  dashboard_address=None, worker_dashboard_address=None) as local:
        result = {}
        search = threading.Thread(daemon=True, target=lambda: result.setdefault("code", tune_grid.main(
            ["--data-dir", str(data_dir), "--out", str(out), "--layers", "1,2", "--learning-rate", "1e-3", *LONG,
             "--scheduler", local.scheduler_address, "--connect-timeout", "3"])))
        search.start()
        with distributed.Client(local) as client:
            deadline = time.time() + 120
            while time.time() < deadline and not any(client.processing().values()):
                time.sleep(0.2)
        local.scale(0)  # the worker and its nanny leave for good
        search.join(timeout=120)  # a hang guard, not a measurement
    assert not search.is_alive() and result.get("code") == 1, result
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "the Dask cluster has had no worker for 3s (--connect-timeout)" in err[0], err
    assert "run the same command again to resume" in err[0]


@pytest.mark.slow
def test_trials_on_workers_reach_tensorboard_through_the_client(data_dir, tmp_path, cluster):
    import os

    from test_tensorboard import scalars, writer_pids

    out = tmp_path / "run"
    assert tune_grid.main(["--data-dir", str(data_dir), "--out", str(out), "--learning-rate", "1e-3,1e-2",
                           "--layers", "1", "--scheduler", cluster.scheduler_address, "--tensorboard", *TINY]) == 0
    assert str(os.getpid()) not in {r["worker"].split(":")[-1] for r in rows(out)}  # trained on workers
    for number in (1, 2):
        run = out / "tensorboard" / f"trial-{number:04d}"
        assert writer_pids(run) == {os.getpid()}  # the client wrote the events
        assert [step for step, _ in scalars(run)["loss"]] == [1]
