"""Where trials run: in this process, in N local processes (joblib's loky), or on an existing
Dask cluster (--scheduler). On a cluster, the data is copied to every worker once, and each
finished row travels back to the client through a `distributed.Queue`, so results.csv and the
progress lines stay on the machine that started the search.
"""

import contextlib
import functools
import os
import sys
import threading
import uuid
from dataclasses import dataclass, field

from common import UsageError


@dataclass
class Execution:
    """How a search runs its trials. `client` is a distributed.Client on a Dask cluster."""

    n_jobs: int = 1
    client: object = None
    relay: object = None  # the Relay carrying rows from the cluster's workers, while a search runs
    _copies: dict = field(default_factory=dict, repr=False)  # {id(data): (data, its future)}

    @property
    def in_this_process(self):
        return self.client is None and self.n_jobs == 1

    def describe(self):
        if self.client is not None:
            threads = self.client.nthreads()
            return f"Dask at {self.client.scheduler.address} ({len(threads)} workers, {sum(threads.values())} threads)"
        return "local processes" if self.n_jobs > 1 else "this process"

    def drain(self):
        """Once trials have returned, makes sure their rows are in the store (on a cluster they
        arrive through the relay a moment later)."""
        if self.relay is not None:
            self.relay.drain()

    def joblib_backend(self, scatter):
        """For scikit-learn's searches: joblib's Dask backend on a cluster (with `scatter` copied
        to every worker up front), its default (loky processes) otherwise."""
        if self.client is None:
            return contextlib.nullcontext()
        import joblib

        joblib.register_parallel_backend("beans-dask", _ClusterBackend)
        return joblib.parallel_backend("beans-dask", scatter=list(scatter))

    def map(self, fn, items, *data):
        """[fn(item, *data) for item in items], run where this execution runs trials."""
        items = list(items)
        if self.client is not None:
            futures = [self.client.submit(fn, item, *self._on_workers(data), pure=False) for item in items]
            return self.client.gather(futures)
        if self.n_jobs == 1 or len(items) == 1:
            return [fn(item, *data) for item in items]
        import joblib

        return joblib.Parallel(n_jobs=self.n_jobs)(joblib.delayed(fn)(item, *data) for item in items)

    def _on_workers(self, data):
        """Futures of `data` copied to every worker, once per search: scattering the same data
        again per batch races with the release of the previous copies ("lost dependencies")."""
        futures = []
        for value in data:
            if id(value) not in self._copies:
                self._copies[id(value)] = (value, self.client.scatter(value, broadcast=True, hash=False))
            futures.append(self._copies[id(value)][1])
        return futures


@functools.cache
def _cluster_backend():
    from joblib._dask import DaskDistributedBackend

    class ClusterBackend(DaskDistributedBackend):
        """joblib's Dask backend, except that a cluster of one worker thread still gets the
        trials: joblib runs whatever it counts as one job sequentially, in the client process."""

        def effective_n_jobs(self, n_jobs):
            return max(super().effective_n_jobs(n_jobs), 2)

    return ClusterBackend


def _ClusterBackend(**kwargs):  # noqa: N802 - joblib registers a class or a factory
    return _cluster_backend()(**kwargs)


# What the workers unpickle: a cluster whose scheduler or workers cannot import it waits forever.
PROJECT_MODULES = ("common", "tuning.runner", "tuning.searches", "tuning.store")


def tls_security(ca_file, cert, key):
    """distributed.Security for a tls:// cluster: mutual TLS, every side showing a certificate
    signed by the cluster's own CA; None without --tls-ca-file."""
    if not ca_file:
        if cert or key:
            raise UsageError("--tls-cert and --tls-key go with --tls-ca-file")
        return None
    for flag_name, path in (("--tls-ca-file", ca_file), ("--tls-cert", cert), ("--tls-key", key)):
        if not path:
            raise UsageError(f"{flag_name} is needed for a TLS cluster (see README: Scaling out)")
        if not os.path.isfile(path):
            raise UsageError(f"{flag_name}: file not found: {path}")
    from distributed.security import Security

    return Security(tls_ca_file=ca_file, tls_client_cert=cert, tls_client_key=key, require_encryption=True)


def connect(address, timeout=30, security=None):
    """A distributed.Client for an existing scheduler with at least one worker, where the
    scheduler and every worker can import the project. Anything else is one line, within
    about `timeout` seconds, instead of a search that waits forever."""
    try:
        from distributed import Client
    except ImportError:
        raise UsageError("--scheduler needs dask[distributed]: pip install 'dask[distributed]'") from None
    if security is None and str(address).startswith("tls://"):
        raise UsageError("--scheduler tls://...: give --tls-ca-file, --tls-cert and --tls-key")
    try:
        client = Client(address, timeout=timeout, security=security)
    except (OSError, TimeoutError, ValueError) as err:
        reason = (str(err).splitlines() or [""])[0][:200]
        raise UsageError(f"--scheduler: cannot reach a Dask scheduler at {address} "
                         f"({err.__class__.__name__}{': ' + reason if reason else ''})") from None
    try:
        check_cluster(client, timeout)
    except BaseException:
        client.close()
        raise
    return client


def check_cluster(client, timeout):
    try:
        client.wait_for_workers(1, timeout=timeout)
    except TimeoutError:
        raise UsageError(f"--scheduler: the Dask cluster has no worker after {timeout:g}s "
                         "(--connect-timeout)") from None
    for module in PROJECT_MODULES:
        probe = f"bool(__import__({module!r}))"
        for where, run in (("scheduler", lambda: client.run_on_scheduler(eval, probe)),
                           ("workers", lambda: client.run(eval, probe))):
            try:
                run()
            except Exception as err:  # noqa: BLE001 - whatever the cluster raised, it is the answer
                raise UsageError(f"--scheduler: the Dask {where} cannot import {module!r} "
                                 f"({err.__class__.__name__}: {err}); start it in the project folder "
                                 "with PYTHONPATH=$PWD (see README: Scaling out)") from None


def on_dask_worker():
    if "distributed" not in sys.modules:
        return False
    from distributed import get_worker

    try:
        get_worker()
    except ValueError:
        return False
    return True


class QueueSink:
    """The store's `sink` on a cluster: on a worker, rows go into a named distributed.Queue."""

    def __init__(self, name):
        self.name = name

    def remote(self):
        return on_dask_worker()

    def put(self, row):
        from distributed import Queue

        Queue(self.name).put(row)


class Relay:
    """While a search runs on a cluster, appends the rows that workers send to the client's store
    (which prints their progress lines). A worker's put() returns once the scheduler holds the
    row, so when a trial's task has returned, its row is in the queue: `drain` fetches it."""

    def __init__(self, execution, store):
        from distributed import Queue

        self.execution = execution
        self.store = store
        self.name = f"beans-tune-{uuid.uuid4().hex}"
        self.queue = Queue(self.name, client=execution.client)
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._relay, daemon=True)

    def _take(self):
        with self.lock:
            rows = self.queue.get(batch=True) if self.queue.qsize() else []
            for row in rows:
                self.store.append(row)
            return bool(rows)

    def drain(self):
        while self._take():
            pass

    def _relay(self):
        # polls rather than blocking in get(timeout=...), whose time-outs the scheduler logs as errors
        while not self.stopping.is_set():
            if not self._take():
                self.stopping.wait(0.2)

    def __enter__(self):
        self.store.sink = QueueSink(self.name)
        self.execution.relay = self
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stopping.set()
        self.thread.join()
        self.drain()
        self.store.sink = None
        self.execution.relay = None
        return False


def default_threads(n_jobs):
    """TensorFlow threads per local trial process: the cores shared out."""
    return max(1, (os.cpu_count() or 1) // n_jobs)
