"""Where trainings run: in this process, in N local processes (joblib's loky), or on an existing
Dask cluster (--scheduler). Wherever they run, `Execution.run` hands each training's result back
to the process that started the search as it finishes; only that process writes anything. On a
cluster the data are held once, as a task the scheduler can compute again.
"""

import os
import time
import warnings
from dataclasses import dataclass, field

from ..hparams import UsageError

CONNECT_TIMEOUT = 30  # seconds to wait for a worker, at start and whenever a cluster has none (--connect-timeout)


class ExecutionLost(Exception):
    """Where the trainings run is gone: a local trial process died, or a cluster had no worker
    for `Execution.patience` seconds or cancelled the trainings. Its message says which."""


class ClusterLost(ExecutionLost):
    """A Dask cluster that cannot run the trainings any more."""


@dataclass(frozen=True)
class Killed:
    """What `Execution.run` yields for a training whose Dask worker died more often than
    distributed.scheduler.allowed-failures allows (KilledWorker)."""

    times: int
    worker: str = None


@dataclass
class Execution:
    """How a search runs its trainings. `client` is a distributed.Client on a Dask cluster."""

    n_jobs: int = 1
    client: object = None
    patience: float = CONNECT_TIMEOUT  # seconds a cluster may have no worker before its search ends
    follow_cluster: bool = False  # on a cluster: as many trainings at once as it has threads now
    _copies: dict = field(default_factory=dict, repr=False)  # {id(data): (data, its future)}

    @property
    def in_this_process(self):
        return self.client is None and self.n_jobs == 1

    def describe(self):
        if self.client is not None:
            threads = self.client.nthreads()
            return f"Dask at {self.client.scheduler.address} ({len(threads)} workers, {sum(threads.values())} threads)"
        return "local processes" if self.n_jobs > 1 else "this process"

    def run(self, fn, items, *data):
        """Yields (index, fn(item, *data)) for each of `items` as it finishes, in whatever order;
        (index, Killed) for one that killed its Dask workers when it ran alone. Raises
        ExecutionLost when a local trial process dies, ClusterLost when a cluster has had no
        worker for `patience` seconds or cancelled the trainings. Whatever has not finished when
        the caller stops (Ctrl-C, an error) is cancelled.

        `items` is read as trainings are handed out, so that an item can depend on the results
        before it (tuning.pruning's Bar): in this process and on a cluster, after the results
        before it were taken; in local processes, by joblib's own thread as a process frees up,
        which can be before the driver has taken the result that freed it."""
        if self.client is not None:
            yield from self._on_cluster(fn, items, data)
        elif self.n_jobs == 1:
            for index, item in enumerate(items):
                yield index, fn(item, *data)
        else:
            import joblib
            from joblib.externals.loky.process_executor import TerminatedWorkerError

            # one training handed out per free process: each item made as late as it can be
            parallel = joblib.Parallel(n_jobs=self.n_jobs, return_as="generator_unordered", pre_dispatch="n_jobs")
            try:
                yield from parallel(joblib.delayed(_indexed)(index, fn, item, *data)
                                    for index, item in enumerate(items))
            except TerminatedWorkerError:
                raise ExecutionLost("a local trial process died (killed, or out of memory)") from None

    def _on_cluster(self, fn, items, data):
        """At most n_jobs trainings on the cluster at once (with follow_cluster, as many as it has
        threads at the moment), so that no training waits on a worker beside a running one: Dask
        blames every task a dying worker holds. A training whose
        workers died (KilledWorker) runs again alone once the others are done, and only if it
        kills its workers alone is it reported Killed: the death is then its own."""
        held = [self.hold(value) for value in data]
        handed, suspects = {}, []
        queue = ((index, handed.setdefault(index, item)) for index, item in enumerate(items))
        for index, result in self._window(fn, queue, held, self.n_jobs):
            if isinstance(result, Killed):
                suspects.append(index)
            else:
                yield index, result
        for index in suspects:
            yield from self._window(fn, iter([(index, handed[index])]), held, 1)

    def _window(self, fn, queue, held, width):
        from distributed import wait

        futures, alone_since, left = {}, None, True
        try:
            while left or futures:
                wide = max(sum(self.client.nthreads().values()), 1) if self.follow_cluster and width > 1 else width
                while left and len(futures) < wide:
                    index, item = next(queue, (None, None))
                    if index is None:
                        left = False
                        break
                    futures[self.client.submit(fn, item, *held, pure=False)] = index
                try:
                    done, _ = wait(list(futures), timeout=1, return_when="FIRST_COMPLETED")
                except TimeoutError:
                    done = set()
                for future in sorted(done, key=futures.get):
                    yield futures.pop(future), _result(future)
                now = time.monotonic()
                alone_since = None if self.client.nthreads() else (alone_since or now)
                if futures and alone_since is not None and now - alone_since >= self.patience:
                    raise ClusterLost(f"the Dask cluster has had no worker for {self.patience:g}s "
                                      "(--connect-timeout)")
        finally:
            if futures:
                self.client.cancel(list(futures), force=True)

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


def _indexed(index, fn, item, *data):
    return index, fn(item, *data)


def _same(value):
    return value


def _result(future):
    """A finished future's value, or Killed for a training that killed its workers."""
    if future.status == "finished":
        return future.result()
    if future.status == "cancelled":
        raise ClusterLost("the Dask cluster cancelled the trainings")
    err = future.exception()
    if type(err).__name__ != "KilledWorker":
        raise err
    worker = getattr(getattr(err, "last_worker", None), "address", None)
    return Killed(getattr(err, "allowed_failures", 0) + 1, worker)


# What the workers unpickle: a cluster whose scheduler or workers cannot import it waits forever.
PROJECT_MODULES = ("beans_tune.tuning.runner", "beans_tune.tuning.store", "beans_tune.tuning.pruning")


def connect(address, timeout=CONNECT_TIMEOUT):
    """A distributed.Client for an existing scheduler with at least one worker, where the
    scheduler and every worker can import the project. Anything else is one line, within
    about `timeout` seconds, instead of a search that waits forever. A tls:// cluster's
    certificates come from Dask's own configuration (distributed.comm.tls.*: docs/dask.md)."""
    try:
        from distributed import Client
    except ImportError:
        raise UsageError("--scheduler needs dask[distributed]: pip install 'dask[distributed]'") from None
    try:
        client = Client(address, timeout=timeout)
    except (OSError, TimeoutError, TypeError, ValueError) as err:
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
                                 f"({err.__class__.__name__}: {err}); install the project in its "
                                 "environment: pip install . (see docs/dask.md)") from None


def default_threads(n_jobs):
    """TensorFlow threads per local trial process: the cores shared out."""
    return max(1, (os.cpu_count() or 1) // n_jobs)
