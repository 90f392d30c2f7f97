"""One training, wherever it runs: `train_job(job, base, data, options)` trains one candidate
on one fold and returns its row, writing nothing (the driver, tuning.evaluate, stores it). And
`BeansClassifier`, the scikit-learn estimator that trains: usable as is in GridSearchCV,
RandomizedSearchCV or cross_val_score, side-effect free.

Every training fits on the train split (early-stopped on the validation split, or on a held-out
tenth of the training fold with --cv) and is scored by its best epoch's accuracy on the
validation split, or by its accuracy on the fold. Nothing here sees the test split.
"""

import contextlib
import dataclasses
import functools
import inspect
import math
import os
import socket
import time
from dataclasses import dataclass

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin

from .. import checkpoint, cli, images, training
from ..hparams import HPARAM_NAMES, HParams
from .report import describe
from .space import plain
from .store import DIVERGED, FAILED, OK, PRUNED, TIMEOUT


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
class TrialOptions:
    """How every training of a search runs; travels with each training to where it runs."""

    seed: int = 0
    threads: int = None             # TensorFlow threads per trial (None: TensorFlow's choice)
    timeout: float = None           # seconds; a longer trial is stopped and recorded "timeout"
    heartbeat: float = 60.0         # seconds between a running trial's epoch lines (None: silent;
                                    # on a Dask worker always silent)


@dataclass(frozen=True)
class Job:
    """One training: a candidate's searched values and the fold it is scored on ("validation",
    "cv1".."cvK", or "seedN", a repeat trained with seed N)."""

    params: dict
    fold: str = "validation"
    start: object = None    # checkpoint.State this training continues (continuing halving), or None
    horizon: int = None     # epochs its learning-rate schedule spans (None: its own epochs)
    keep: bool = False      # return its end State with its row (a halving rung below the top)
    bar: object = None      # tuning.pruning.Bar it is held to (--prune), or None


@dataclass
class Outcome:
    """What a training produced. `model` is None once it has left the process that trained."""

    val_accuracy: float
    status: str
    message: str = ""
    seconds: float = 0.0
    cpu_seconds: float = float("nan")
    epochs: int = 0
    model: object = None
    history: dict = None  # per-epoch curves (training.TrainResult.history), stored beside the row
    state: object = None  # checkpoint.State at the end, when the job asked to keep it

    def row(self, job):
        """The store's row of `job` (tuning.store.TrialStore.append), made where it trained;
        with the training's end State under "state" when the job kept it (tuning.evaluate saves it)."""
        return {"params": dict(job.params), "fold": job.fold, "val_accuracy": self.val_accuracy,
                "epochs": self.epochs, "fit_seconds": self.seconds, "cpu_seconds": self.cpu_seconds,
                "status": self.status, "message": self.message, "worker": f"{socket.gethostname()}:{os.getpid()}",
                **({"history": self.history} if self.history else {}),
                **({"state": self.state} if self.state is not None else {})}


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


def on_dask_worker():
    import sys

    if "distributed" not in sys.modules:
        return False
    from distributed import get_worker

    try:
        get_worker()
    except ValueError:
        return False
    return True


def train_trial(hp, train, val, options, label="trial", job=None):
    """Trains one configuration; never raises for a failed training (the Outcome says why).
    `job` (a Job) may continue a saved state, span a longer schedule, keep its end state."""
    cli.check_interrupted()  # a Ctrl-C that Python dropped during the last trial stops the search here
    if options.threads:
        limit_threads(options.threads)
    # on a Dask worker a print reaches the worker's log, not the user: no heartbeat there
    log = Heartbeat(label, options.heartbeat) if options.heartbeat and not on_dask_worker() else None
    start, cpu = time.perf_counter(), time.process_time()
    try:
        plan = checkpoint.Plan(start=job and job.start, horizon=job and job.horizon, keep=bool(job and job.keep),
                               timeout=options.timeout, prune=job and job.bar)
        result = training.train(hp, train, val, seed=options.seed, log=log, plan=plan)
    except Exception as err:  # noqa: BLE001 - a failed trial is recorded, the search goes on
        cli.check_interrupted()  # a Ctrl-C that surfaced inside TensorFlow as another error: not a result
        return Outcome(float("nan"), FAILED, f"{err.__class__.__name__}: {err}", time.perf_counter() - start,
                       time.process_time() - cpu)
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu  # model building included
    epoch = len(result.history.get("loss", [])) or result.epochs  # counted from the start of a continued training
    if result.status == "timeout":
        return Outcome(float("nan"), TIMEOUT, f"stopped after {options.timeout:g}s (--trial-timeout), "
                       f"epoch {epoch}", seconds, cpu, result.epochs, history=result.history)
    if result.status == "nan":
        return Outcome(float("nan"), DIVERGED, f"loss became NaN (epoch {epoch})", seconds, cpu,
                       result.epochs, history=result.history)
    if result.status == "pruned":  # its score so far: below the finished trials' median, not a result to keep
        return Outcome(result.val_accuracy, PRUNED, result.message, seconds, cpu, result.epochs,
                       history=result.history)
    return Outcome(result.val_accuracy, OK, "", seconds, cpu, result.epochs, result.model, history=result.history,
                   state=result.state)


@dataclass(frozen=True)
class Holdout:
    """The validation split handed to `fit` for early stopping. Deliberately not array-like:
    scikit-learn then passes it to every fit unchanged instead of indexing it like X."""

    x: np.ndarray
    y: np.ndarray


class BeansClassifier(ClassifierMixin, BaseEstimator):
    """scikit-learn estimator over the beans CNN: one parameter per HParams field (None keeps
    HParams' default) and `seed`; `fit` trains, `score` is accuracy. Nothing is written anywhere.

    fit(X, y, validation=Holdout(...), options=TrialOptions(...), classes=(...)): `validation` is
    the split to early-stop on (without it, a stratified tenth of X is held out); `options` how it
    trains (without them, silently, with `seed` or 0); `classes` the class names, label id =
    index (without them, one class per label id up to the highest in y). The parameters are
    HParams' fields, read from hparams.HParams itself (the signature below is made from it: one
    list, not two)."""

    def __init__(self, **params):
        unknown = set(params) - {*HPARAM_NAMES, "seed"}
        if unknown:
            raise TypeError(f"BeansClassifier got unexpected parameters {sorted(unknown)}")
        for name in (*HPARAM_NAMES, "seed"):
            setattr(self, name, params.get(name))

    def hparams(self):
        return HParams(**{n: plain(getattr(self, n)) for n in HPARAM_NAMES if getattr(self, n) is not None})

    def fit(self, X, y, validation=None, options=None, label="trial", job=None, classes=()):
        options = options or TrialOptions(heartbeat=None)  # a bare estimator: silent
        if self.seed is not None:
            options = dataclasses.replace(options, seed=int(self.seed))
        fold = images.Split(X, y, classes=tuple(classes))
        self.classes_ = np.arange(fold.num_classes)
        try:
            train, val = _early_stopping_split(fold, validation, options.seed)
        except ValueError as err:  # a fold too small to hold out every class
            self.outcome_ = Outcome(float("nan"), FAILED, f"{err.__class__.__name__}: {err}")
        else:
            self.outcome_ = train_trial(self.hparams(), train, val, options, label, job)
        self.model_, self.outcome_.model = self.outcome_.model, None
        return self

    def predict(self, X):
        probabilities = self.model_.predict(X, batch_size=128, verbose=0)
        return self.classes_[np.argmax(probabilities, axis=1)]


# scikit-learn reads an estimator's parameters from its __init__ signature: HParams' fields
BeansClassifier.__init__.__signature__ = inspect.Signature(
    [inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD)]
    + [inspect.Parameter(n, inspect.Parameter.KEYWORD_ONLY, default=None) for n in (*HPARAM_NAMES, "seed")])


@dataclass(frozen=True)
class Data:
    """The images a search's trainings may see, and how they are cut into folds: the validation
    split as the one fold, or K stratified folds of train + validation (`cv`, `test_fold` as
    scikit-learn's PredefinedSplit takes it)."""

    train: images.Split
    validation: images.Split
    x: np.ndarray = None        # train + validation, with --cv
    y: np.ndarray = None
    test_fold: np.ndarray = None

    @classmethod
    def make(cls, train, validation, cv=None, seed=0):
        if not cv:
            return cls(train, validation)
        from sklearn.model_selection import StratifiedKFold

        x, y = np.concatenate([train.x, validation.x]), np.concatenate([train.y, validation.y])
        test_fold = np.empty(len(y), int)
        for k, (_, rows) in enumerate(StratifiedKFold(cv, shuffle=True, random_state=seed).split(x, y)):
            test_fold[rows] = k
        return cls(train, validation, x, y, test_fold)

    def folds(self):
        """The folds every candidate is scored on."""
        if self.test_fold is None:
            return ["validation"]
        return [f"cv{k + 1}" for k in range(int(self.test_fold.max()) + 1)]


def train_job(job, base, data, options):
    """Trains `job` (a Job) from `base` (HParams) on `data` (Data) and returns its row."""
    params, fold = job.params, job.fold
    if fold.startswith("seed"):  # a repeat: its own seed, on the validation split
        options = dataclasses.replace(options, seed=int(fold[4:]))
    estimator = BeansClassifier(**{**base.to_dict(), **{k: plain(v) for k, v in params.items()}})
    label = describe(params, fold)
    if not fold.startswith("cv"):
        estimator.fit(data.train.x, data.train.y, validation=Holdout(data.validation.x, data.validation.y),
                      options=options, label=label, job=job, classes=data.train.classes)
        return estimator.outcome_.row(job)  # scored as train() measured it: no second pass
    k = int(fold[2:]) - 1
    fit_rows, scored_rows = data.test_fold != k, data.test_fold == k
    estimator.fit(data.x[fit_rows], data.y[fit_rows], options=options, label=label, job=job,
                  classes=data.train.classes)
    outcome = estimator.outcome_
    if outcome.status == OK:
        try:
            outcome = dataclasses.replace(outcome, val_accuracy=estimator.score(data.x[scored_rows],
                                                                                data.y[scored_rows]))
        except Exception as err:  # noqa: BLE001 - recorded as the training's failure
            outcome = dataclasses.replace(outcome, val_accuracy=float("nan"), status=FAILED,
                                          message=f"{err.__class__.__name__}: {err}")
    return outcome.row(job)


def _early_stopping_split(fold, validation, seed):
    """(train, val): the training `fold` (a Split) and the given validation split, or a stratified
    tenth of the fold held out of it."""
    if validation is not None:
        return fold, images.Split(validation.x, validation.y, classes=fold.classes)
    from sklearn.model_selection import train_test_split

    holdout = max(math.ceil(0.1 * len(fold)), fold.num_classes)  # >= 1 image per class
    x_fit, x_val, y_fit, y_val = train_test_split(fold.x, fold.y, test_size=holdout, stratify=fold.y,
                                                  random_state=seed)
    return images.Split(x_fit, y_fit, classes=fold.classes), images.Split(x_val, y_val, classes=fold.classes)
