"""One trial: a training run under a thread limit and a time-out, recorded in the trial store,
or taken from the store when a resumed search already ran it; and `BeansClassifier`, the
scikit-learn estimator through which GridSearchCV and RandomizedSearchCV run trials.

Every trial trains on the train split (early-stopped on the validation split, or on a held-out
tenth of the training fold with --cv) and is scored on the validation split (tuning.scoring: its
best epoch, or its last epochs), or by its accuracy on the fold. Nothing here ever sees the test
split.
"""

import contextlib
import dataclasses
import functools
import math
import os
import time
from dataclasses import dataclass, field

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin

import cli
import common
from common import HPARAM_NAMES, HParams

from . import scoring
from .execution import on_dask_worker
from .report import describe
from .space import plain
from .store import DIVERGED, FAILED, OK, RETRYABLE, TIMEOUT, trial_key


def limit_threads(threads):
    """Caps TensorFlow's thread pools so that parallel trials do not oversubscribe the cores.

    Returns True when the limit is in force. TensorFlow accepts it only before its runtime
    starts in this process: a fresh worker, or the main process before any image is decoded."""
    import tensorflow as tf

    inter = min(threads, 2)
    with contextlib.suppress(RuntimeError):
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(inter)
    return (tf.config.threading.get_intra_op_parallelism_threads() == threads
            and tf.config.threading.get_inter_op_parallelism_threads() == inter)


@dataclass(frozen=True)
class TrialSettings:
    """How trials run and where they go; the same for every trial of a search."""

    store: object                   # TrialStore
    seed: int = 0
    threads: int = None             # TensorFlow threads per trial (None: TensorFlow's choice)
    timeout: float = None           # seconds; a longer trial is stopped and recorded "timeout"
    done: dict = field(default_factory=dict)  # {trial key: row} of a resumed search
    retry: bool = False             # --retry-failed: train failed and timed-out trials again
    killed: frozenset = frozenset()  # keys of trainings that killed their Dask workers in this run
    heartbeat: float = 60.0         # seconds between a running trial's epoch lines (None: silent;
                                    # on a Dask worker always silent)
    score: str = "best-epoch"       # how a trial scored on the validation split is ranked (tuning.scoring)

    def finished(self, params, fold):
        """The stored row of a training not to run again, or None: one from before this run
        (resume), or one this run wrote (a candidate drawn twice: random halving samples integer
        ranges with replacement)."""
        key = trial_key(params, fold)
        row = self.done.get(key)
        if key in self.killed or (row is not None and not (self.retry and row["status"] in RETRYABLE)):
            return row
        return self.written_since(key, row)

    def written_since(self, key, before):
        """The last row of `key` that this run appended (after `before`, a row retried), or None."""
        if self.store is None or not os.path.exists(self.store.path):
            return None  # a Dask worker on another machine: the relay drops a second row
        after = int(before["trial"]) if before is not None else 0
        rows = [r for r in self.store.rows() if trial_key(r["params"], r["fold"]) == key and int(r["trial"]) > after]
        return rows[-1] if rows else None


@dataclass
class Outcome:
    """What a trial produced. `model` is None for a trial taken from the store or not trained."""

    val_accuracy: float
    status: str
    message: str = ""
    seconds: float = 0.0
    cpu_seconds: float = float("nan")
    epochs: int = 0
    model: object = None
    reused: bool = False
    history: dict = None  # per-epoch curves (common.TrainResult.history), stored beside the row


class Heartbeat:
    """A trial's epoch log: passes on at most one epoch line every `every` seconds, so that a
    trial of several minutes shows that it runs and how far it got, between progress lines."""

    def __init__(self, label, every, out=functools.partial(print, flush=True), clock=time.monotonic):
        self.label, self.every, self.out, self.clock = label, every, out, clock
        self.last = clock()

    def __call__(self, line):
        now = self.clock()
        if now - self.last >= self.every:
            self.last = now
            self.out(f"  running {self.label}: {line}")


def train_trial(hp, train, val, settings, label="trial"):
    """Trains one configuration; never raises for a failed trial (the Outcome says why)."""
    cli.check_interrupted()  # a Ctrl-C that Python dropped during the last trial stops the search here
    if settings.threads:
        limit_threads(settings.threads)
    # on a Dask worker a print reaches the worker's log, not the user: no heartbeat there
    log = Heartbeat(label, settings.heartbeat) if settings.heartbeat and not on_dask_worker() else None
    start, cpu = time.perf_counter(), time.process_time()
    try:
        result = common.train(hp, train, val, seed=settings.seed, log=log, timeout=settings.timeout)
    except Exception as err:  # noqa: BLE001 - a failed trial is recorded, the search goes on
        return Outcome(float("nan"), FAILED, f"{err.__class__.__name__}: {err}", time.perf_counter() - start,
                       time.process_time() - cpu)
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu  # model building included
    if result.status == "timeout":
        return Outcome(float("nan"), TIMEOUT, f"stopped after {settings.timeout:g}s (--trial-timeout), "
                       f"epoch {result.epochs}", seconds, cpu, result.epochs, history=result.history)
    if result.status == "nan":
        return Outcome(float("nan"), DIVERGED, f"loss became NaN (epoch {result.epochs})", seconds, cpu,
                       result.epochs, history=result.history)
    # best-epoch is what train() measured for the weights it kept; another score reads the curve
    score = result.val_accuracy if settings.score == "best-epoch" else scoring.score(result.history, settings.score)
    return Outcome(score, OK, "", seconds, cpu, result.epochs, result.model, history=result.history)


def record(settings, params, fold, outcome):
    settings.store.record(params, fold, outcome.val_accuracy, outcome.seconds, outcome.cpu_seconds,
                          outcome.epochs, outcome.status, outcome.message, history=outcome.history)


def reuse(row):
    return Outcome(row["val_accuracy"], row["status"], row["message"], row["fit_seconds"], row["cpu_seconds"],
                   row["epochs"], reused=True)


def run_point(params, base, train, val, settings):
    """One trial of a search that proposes points itself (Bayesian optimization): the stored
    result if this point was trained before, else a training recorded in the store."""
    done = settings.finished(params, "validation")
    if done is not None:
        return reuse(done)
    settings.store.started(params, "validation")
    outcome = train_trial(dataclasses.replace(base, **{k: plain(v) for k, v in params.items()}),
                          train, val, settings, describe(params, "validation"))
    record(settings, params, "validation", outcome)
    outcome.model = None  # only the score travels back
    return outcome


@dataclass(frozen=True)
class Holdout:
    """The validation split handed to `fit` for early stopping. Deliberately not array-like:
    scikit-learn then passes it to every fit unchanged instead of indexing it like X."""

    x: np.ndarray
    y: np.ndarray


class BeansClassifier(ClassifierMixin, BaseEstimator):
    """scikit-learn estimator over the beans CNN: one parameter per HParams field (None keeps
    HParams' default), `fit` trains one trial, `score` is its accuracy, recorded in the store.

    fit(X, y, test_fold=..., validation=Holdout(...)): `test_fold` (scikit-learn slices it to the
    training rows, like X) names the fold being scored, the one whose rows are missing;
    `validation` is the split to early-stop on (without it, a stratified tenth of the training
    fold is held out)."""

    def __init__(self, learning_rate=None, momentum=None, beta_1=None, beta_2=None, epsilon=None,
                 layers=None, units=None, decay=None, schedule=None, batch_size=None, optimizer=None, epochs=None,
                 patience=None, batch_norm=None, bn_momentum=None, augment=None, seed=None, trials=None):
        self.learning_rate = learning_rate
        self.momentum = momentum
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.layers = layers
        self.units = units
        self.decay = decay
        self.schedule = schedule
        self.batch_size = batch_size
        self.optimizer = optimizer
        self.epochs = epochs
        self.patience = patience
        self.batch_norm = batch_norm
        self.bn_momentum = bn_momentum
        self.augment = augment
        self.seed = seed      # a repeat's seed (tune_grid.py --repeats); None: the search's seed
        self.trials = trials  # TrialSettings

    def hparams(self):
        return HParams(**{n: plain(getattr(self, n)) for n in HPARAM_NAMES if getattr(self, n) is not None})

    def fit(self, X, y, test_fold=None, validation=None):
        settings = self.trials or TrialSettings(store=None, heartbeat=None)  # a bare estimator: silent
        fold_index = _held_out_fold(test_fold)
        self.fold_ = "validation" if validation is not None else f"cv{fold_index + 1}"
        if self.seed is not None:  # one repeat of the configuration: its own seed, its own row
            settings = dataclasses.replace(settings, seed=int(self.seed))
            self.fold_ = f"seed{int(self.seed)}"
        self.classes_ = np.arange(len(common.CLASS_NAMES))
        self.params_ = {n: getattr(self, n) for n in (settings.store.names if settings.store else ())}
        self.validation_ = validation
        done = settings.finished(self.params_, self.fold_) if settings.store else None
        if done is not None:  # a resumed search: this trial finished before
            self.outcome_ = reuse(done)
            return self
        try:
            train, val = _early_stopping_split(X, y, validation, settings.seed)
        except ValueError as err:  # a fold too small to hold out every class
            self.outcome_ = Outcome(float("nan"), FAILED, f"{err.__class__.__name__}: {err}")
        else:
            if settings.store:
                settings.store.started(self.params_, self.fold_)
            self.outcome_ = train_trial(self.hparams(), train, val, settings, describe(self.params_, self.fold_))
        self.model_ = self.outcome_.model
        self.outcome_.model = None
        if self.outcome_.status != OK and settings.store:
            record(settings, self.params_, self.fold_, self.outcome_)
        return self

    def score(self, X, y, sample_weight=None):
        """Accuracy, recorded in the store. On the validation split itself this is the accuracy
        train() measured there for the weights it kept: no second pass over the images."""
        outcome = self.outcome_
        if outcome.reused or outcome.status != OK:
            return outcome.val_accuracy
        holdout = self.validation_
        if (sample_weight is None and holdout is not None and len(y) == len(holdout.y)
                and np.array_equal(y, holdout.y) and np.array_equal(X, holdout.x)):
            accuracy = outcome.val_accuracy
        else:
            try:
                accuracy = super().score(X, y, sample_weight)
            except Exception as err:  # noqa: BLE001 - recorded: scikit-learn would hide it as a NaN
                outcome = dataclasses.replace(outcome, status=FAILED, message=f"{err.__class__.__name__}: {err}")
                accuracy = float("nan")
        if self.trials is not None and self.trials.store is not None:
            record(self.trials, self.params_, self.fold_, dataclasses.replace(outcome, val_accuracy=accuracy))
        return accuracy

    def predict(self, X):
        probabilities = self.model_.predict(X, batch_size=128, verbose=0)
        return self.classes_[np.argmax(probabilities, axis=1)]


def _early_stopping_split(X, y, validation, seed):
    """(train, val): the given validation split, or a stratified tenth of the training fold."""
    if validation is not None:
        return common.Split(X, y), common.Split(validation.x, validation.y)
    from sklearn.model_selection import train_test_split

    holdout = max(math.ceil(0.1 * len(y)), len(common.CLASS_NAMES))  # >= 1 image per class
    x_fit, x_val, y_fit, y_val = train_test_split(X, y, test_size=holdout, stratify=y, random_state=seed)
    return common.Split(x_fit, y_fit), common.Split(x_val, y_val)


def _held_out_fold(test_fold):
    """The fold a fit is scored on: the one fold id absent from its training rows' ids
    (-1 marks rows that are in no test fold, as in PredefinedSplit)."""
    if test_fold is None:
        return 0
    present = {int(f) for f in np.unique(test_fold)} - {-1}
    return next(k for k in range(len(present) + 1) if k not in present)
