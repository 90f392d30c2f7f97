"""The one path every search trains through, shaped as scikit-learn's `evaluate_candidates`:
`Evaluator(candidates) -> rows`, one row per candidate and fold, in candidate order.

The driver (the process that started the search) alone decides what to train and alone writes:
a training the store already answers is not trained again (a resumed search, a candidate drawn
twice, a point the Bayesian optimizer proposes again); the others run where the execution runs
them (tuning.execution) and come back as rows, each appended to the store as it arrives. A
training that kills its Dask workers comes back as such and is stored as failed.
"""

import dataclasses
import sys
from dataclasses import dataclass, field

import numpy as np

from .. import cli
from . import runner
from .execution import Execution, Killed
from .space import plain
from .store import FAILED, OK, RETRYABLE, complete, trial_key


@dataclass(frozen=True)
class Continue:
    """Trainings that continue earlier ones (continuing successive halving): each starts from the
    saved state of the training with the same values but `earlier`'s ({"epochs": 3}; None: from
    scratch), spreads its learning-rate schedule over `horizon` epochs, and saves its own end
    state when `keep`. A training whose earlier state is missing trains from scratch."""

    earlier: dict = None
    horizon: int = None
    keep: bool = True


@dataclass
class Evaluator:
    """Trains candidates (dicts of searched values, "seed" naming a repeat) on every fold of
    `data` from `base`, through `execution`, into `store`.

    `retry` (--retry-failed): failed and timed-out trainings the store holds from before train
    once more. `train` is what trains one job where it runs (tests replace it)."""

    store: object                       # tuning.store.TrialStore
    base: object                        # hparams.HParams
    data: runner.Data
    options: runner.TrialOptions = runner.TrialOptions()
    execution: Execution = field(default_factory=Execution)
    retry: bool = False
    prog: str = "search"
    train: object = runner.train_job
    answers: dict = None                # {trial key: row} the store answers without training
    pruner: object = None               # tuning.pruning.Pruner (--prune): each training gets its Bar as it starts

    def __post_init__(self):
        if self.answers is None:
            self.answers = {k: r for k, r in self.store.latest().items()
                            if not (self.retry and r["status"] in RETRYABLE)}

    def __call__(self, candidates, proceed=None):
        """Rows of every candidate on every fold, trained where the store has none; with
        `proceed` (a Continue) continuing earlier trainings' saved states."""
        jobs = [job for c in candidates for job in self.jobs(c)]
        todo = list({trial_key(j.params, j.fold): j for j in jobs
                     if trial_key(j.params, j.fold) not in self.answers}.values())
        if proceed is not None:
            todo = [self.continuing(job, proceed) for job in todo]
        if self.pruner is not None:  # each held to the medians as they stand when it is handed out
            todo = [*todo]
            handed = (dataclasses.replace(job, bar=self.pruner.bar()) for job in todo)
        else:
            handed = todo
        for index, result in self.execution.run(self.train, handed, self.base, self.data, self.options):
            job = todo[index]
            if isinstance(result, Killed):
                result = self.killed(job, result)
            elif result.get("status", OK) != OK:
                cli.check_interrupted()  # a failure that a Ctrl-C caused is not the training's result
            state = result.pop("state", None)
            if state is not None:  # saved before its row: a row in results.csv means its state is on disk
                self.store.save_state(trial_key(job.params, job.fold), state)
            self.store.append(result)
            if self.pruner is not None:
                self.pruner.add(result, result.get("history"))
            self.answers[trial_key(job.params, job.fold)] = complete(result, self.store.names)
        return [self.answers[trial_key(j.params, j.fold)] for j in jobs]

    def drop_states(self, candidates=None):
        """Removes the saved states of `candidates`' trainings (on every fold); None: all."""
        self.store.drop_states(None if candidates is None else
                               [trial_key(j.params, j.fold) for c in candidates for j in self.jobs(c)])

    def continuing(self, job, proceed):
        start = None
        if proceed.earlier:
            start = self.store.load_state(trial_key({**job.params, **proceed.earlier}, job.fold))
        return dataclasses.replace(job, start=start, horizon=proceed.horizon, keep=proceed.keep)

    def jobs(self, candidate):
        candidate = {k: plain(v) for k, v in candidate.items()}
        if "seed" in candidate:  # a repeat (tune_grid.py --repeats): the seed is its fold
            seed = candidate.pop("seed")
            return [runner.Job(candidate, f"seed{int(seed)}")]
        return [runner.Job(candidate, fold) for fold in self.data.folds()]

    def killed(self, job, killed):
        times = f"{killed.times} time{'s' if killed.times > 1 else ''}"
        values = ", ".join(f"{k}={v}" for k, v in job.params.items())
        print(f"{self.prog}: the training {values} (fold {job.fold}) killed its Dask worker {times}: "
              "recorded failed; the search goes on without it", file=sys.stderr, flush=True)
        return {"params": job.params, "fold": job.fold, "val_accuracy": float("nan"), "fit_seconds": 0.0,
                "status": FAILED, "worker": killed.worker,
                "message": f"its Dask worker died {times} while training it (KilledWorker; "
                           "distributed.scheduler.allowed-failures)"}


def score(rows):
    """A candidate's score over its folds' rows: their mean, NaN unless every one is "ok" (as
    scikit-learn's mean_test_score with error_score=nan)."""
    if any(r["status"] != OK for r in rows):
        return float("nan")
    return float(np.mean([r["val_accuracy"] for r in rows]))
