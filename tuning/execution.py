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
import time
import uuid
import warnings
from dataclasses import dataclass, field

from common import UsageError

from .store import RETRYABLE, trial_key


CONNECT_TIMEOUT = 30  # seconds to wait for a worker, at start and whenever a cluster has none (--connect-timeout)


@dataclass
class Execution:
    """How a search runs its trials. `client` is a distributed.Client on a Dask cluster."""

    n_jobs: int = 1
    client: object = None
    relay: object = None  # the Relay carrying rows from the cluster's workers, while a search runs
    patience: float = CONNECT_TIMEOUT  # seconds a cluster may have no worker before its search ends
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
        """For scikit-learn's searches: joblib's Dask backend on a cluster (with `scatter` held
        on the cluster up front), its default (loky processes) otherwise."""
        if self.client is None:
            return contextlib.nullcontext()
        import joblib

        joblib.register_parallel_backend("beans-dask", functools.partial(_cluster_backend(), self))
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
        return [self.hold(value) for value in data]

    def abandon(self):
        """Cancels the data held on the cluster, and with it every trial waiting for a worker."""
        self.client.cancel([future for _, future in self._copies.values()], force=True)

    def hold(self, value):
        """A future of `value` on the cluster, made once per search. Not scattered: scattered
        data that loses every worker holding it is gone for good, and so is the search (a
        training that kills its worker a few times does that on two workers). This is a task
        returning `value`, which the scheduler computes again when its holders die."""
        if id(value) not in self._copies:
            # it is meant to be in the graph; the warning comes from the client's event loop thread
            warnings.filterwarnings("ignore", "(Sending large graph|Large object) of size", UserWarning)
            self._copies[id(value)] = (value, self.client.submit(_same, value, pure=False))
        return self._copies[id(value)][1]


def _same(value):
    return value


@functools.cache
def _cluster_backend():
    import asyncio

    from joblib._dask import DaskDistributedBackend

    class ClusterBackend(DaskDistributedBackend):
        """joblib's Dask backend, except that
        - a cluster of one worker thread still gets the trials: joblib runs whatever it counts
          as one job sequentially, in the client process;
        - the data are held as tasks (Execution.hold), and nothing is scattered: joblib would
          scatter the data and every sizeable argument, which a worker's death can lose;
        - a task that fails on the cluster (KilledWorker) ends the search instead of hanging it."""

        def __init__(self, execution, scatter=(), **kwargs):
            super().__init__(client=execution.client, **kwargs)
            self._scatter = list(scatter)
            self.data_futures = {id(x): execution.hold(x) for x in self._scatter}

        def start_call(self):
            super().start_call()
            self.call_data_futures = None  # no automatic scatter of the arguments

        def stop_call(self):
            self.call_data_futures = {}  # what joblib's stop_call clears
            super().stop_call()

        def effective_n_jobs(self, n_jobs):
            return max(super().effective_n_jobs(n_jobs), 2)

        async def _collect(self):
            # joblib's own loop sets a failed task's exception (a KilledWorker: its worker died
            # allowed-failures + 1 times) on a future that nothing waits on, and never tells
            # Parallel, which then waits forever. Here the failure reaches Parallel's callback,
            # which raises it in the search.
            while self._continue:
                async for future, result in self.waiting_futures:
                    cf_future = self._results.pop(future)
                    callback = self._callbacks.pop(future)
                    if future.status == "error":
                        _, exc, _ = result
                        cf_future.set_exception(exc)
                        callback(exc)
                    else:
                        cf_future.set_result(result)
                        callback(result)
                await asyncio.sleep(0.01)

    return ClusterBackend


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


def connect(address, timeout=CONNECT_TIMEOUT, security=None):
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

    @staticmethod
    def here():
        """(this worker's address, this thread): where a training runs."""
        from distributed import get_worker

        return get_worker().address, threading.get_ident()


class Relay:
    """While a search runs on a cluster, appends the rows that workers send to the client's store
    (which prints their progress lines). A worker's put() returns once the scheduler holds the
    row, so when a trial's task has returned, its row is in the queue: `drain` fetches it.

    Workers also say when they start a training: `running` maps (worker address, thread) to the
    training running there, which names the training when the cluster reports a worker killed.

    A row for a training whose result the store already holds is dropped (a failed or timed-out
    one from an earlier run excepted, with --retry-failed): when a worker dies, Dask recomputes
    the finished tasks whose results it held, and those would train again."""

    def __init__(self, execution, store, retry=False):
        from distributed import Queue

        self.execution = execution
        self.store = store
        self.retry = retry  # --retry-failed: a failed or timed-out training may get a new row
        self.name = f"beans-tune-{uuid.uuid4().hex}"
        self.queue = Queue(self.name, client=execution.client)
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._relay, daemon=True)
        self.running = {}  # {(worker address, thread id): its "started" message}
        self.dropped = 0   # rows of trainings run twice
        self.appended = set()  # keys of the rows this relay appended
        self.lost = False  # the cluster had no worker for execution.patience seconds

    def _take(self):
        with self.lock:
            items = self.queue.get(batch=True) if self.queue.qsize() else []
            held = self.store.latest() if items else {}
            for item in items:
                key = trial_key(item["params"], item["fold"])  # made here: tuples may travel as lists
                if "started" in item:
                    self.running[(item["worker"], item.get("thread"))] = {**item, "started": key}
                    continue
                for place in [p for p, started in self.running.items() if started["started"] == key]:
                    del self.running[place]
                if key in self.appended or (key in held and not (self.retry and held[key]["status"] in RETRYABLE)):
                    self.dropped += 1  # a recomputed task: the first result stands
                    continue
                self.store.append(item)
                self.appended.add(key)
            return bool(items)

    def killed(self, address):
        """The "started" messages of trainings that were running on the worker at `address`."""
        self.drain()
        with self.lock:
            return [self.running.pop(place) for place in [p for p in self.running if p[0] == address]]

    def in_flight(self):
        """How many trainings this search started on a live worker and has no row for."""
        self.drain()
        live = set(self.execution.client.nthreads())
        with self.lock:
            return sum(place[0] in live for place in self.running)

    def drain(self):
        while self._take():
            pass

    def _relay(self):
        # polls rather than blocking in get(timeout=...), whose time-outs the scheduler logs as errors
        alone_since, checked = None, 0.0
        while not self.stopping.is_set():
            if not self._take():
                self.stopping.wait(0.2)
            now = time.monotonic()
            if now - checked >= 1 and not self.lost:
                checked = now
                alone_since = None if self.execution.client.nthreads() else (alone_since or now)
                if alone_since is not None and now - alone_since >= self.execution.patience:
                    self.lost = True  # every trial waits for a worker: end the search
                    self.execution.abandon()

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
