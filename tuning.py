"""Search plumbing shared by tune_grid.py, tune_random.py and tune_bayes.py.

The three scripts differ only in the search they run (a `Method` below); everything else is
here, written once: the search space parsed from flags, the scikit-learn estimator wrapping
`common.train`, the trial log that appends each finished trial to `results.csv` and prints a
progress line, the ranked table, the final retrain + single test evaluation, and the plots.

    python tune_random.py --data-dir ../shared/beans --n-iter 12 --refine 2

How a configuration is scored, in every search: train on the train split (early-stopped on the
validation split), score accuracy on the validation split. The test split is decoded only after
the search, for the final model.
"""

import contextlib
import csv
import dataclasses
import fcntl
import io
import json
import math
import os
import socket
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin

import common
from common import HPARAM_NAMES, HParams, UsageError, flag, parse_value

# How each hyperparameter is sampled in random and Bayesian search.
LOG_SCALE = {"learning_rate", "decay", "epsilon", "units"}  # spans decades: sample its log
ONE_MINUS_LOG = {"momentum", "beta_1", "beta_2", "bn_momentum"}  # 0.9 vs 0.999: sample log(1 - b)
POWERS_OF_TWO = {"batch_size"}

# Trials train on half the training scripts' epoch budget: a search ranks configurations, and
# 20 epochs (patience 5) is enough to rank them at a quarter of the cost per trial or less.
TRIAL_BUDGET = {"epochs": 20, "patience": 5}
# Five hyperparameters x two values: 32 trials, about 25 minutes at 64x64 on the 2-core machine.
DEFAULT_GRID = {
    **TRIAL_BUDGET,
    "learning_rate": [1e-3, 3e-3],
    "layers": [2, 3],
    "units": [32, 128],
    "decay": [0.0, 0.1],
    "batch_size": [32, 64],
}
# Ranges for random and Bayesian search (lo:hi). Adam diverges above ~0.1 on this network,
# so learning rates stop there rather than at the lecture's 1.
DEFAULT_RANGES = {
    **TRIAL_BUDGET,
    "learning_rate": "1e-4:1e-1",
    "decay": "1e-3:1",
    "layers": "1:4",
    "units": "16:256",
    "batch_size": "16:128",
}


# --------------------------------------------------------------------------------------
# Search space
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Dim:
    """One searched hyperparameter: a range (low, high) or a list of choices."""

    name: str
    low: float = None
    high: float = None
    choices: tuple = None

    @property
    def is_range(self):
        return self.choices is None

    @property
    def scale(self):
        if self.name in LOG_SCALE:
            return "log"
        if self.name in ONE_MINUS_LOG:
            return "1-log"
        if self.name in POWERS_OF_TWO:
            return "pow2"
        return "linear"

    @property
    def is_int(self):
        return common.hparam_type(self.name) is int

    def describe(self):
        if not self.is_range:
            return "{" + ", ".join(_fmt(v) for v in self.choices) + "}"
        if self.scale == "pow2":
            return "{" + ", ".join(str(v) for v in powers_of_two(self.low, self.high)) + "}"
        scale = {"log": "log-uniform", "1-log": "1-x log-uniform", "linear": "uniform"}[self.scale]
        return f"{_fmt(self.low)}:{_fmt(self.high)} {scale}{' int' if self.is_int else ''}"

    def scipy(self):
        """A distribution (or list) for scikit-learn's ParameterSampler."""
        from scipy import stats

        if not self.is_range:
            return list(self.choices)
        if self.scale == "pow2":
            return powers_of_two(self.low, self.high)
        if self.scale == "log":
            return IntLogUniform(self.low, self.high) if self.is_int else stats.loguniform(self.low, self.high)
        if self.scale == "1-log":
            return OneMinusLogUniform(self.low, self.high)
        if self.is_int:
            return stats.randint(int(self.low), int(self.high) + 1)
        return stats.uniform(self.low, self.high - self.low)

    def skopt(self):
        """The same dimension in scikit-optimize's terms."""
        from skopt.space import Categorical, Integer, Real

        if not self.is_range:
            return Categorical(list(self.choices), name=self.name)
        if self.scale == "pow2":
            return Categorical(powers_of_two(self.low, self.high), name=self.name)
        if self.scale == "1-log":
            # skopt has no 1-x prior; search x directly (the GP models it fine over a narrow range)
            return Real(self.low, self.high, name=self.name)
        prior = "log-uniform" if self.scale == "log" else "uniform"
        if self.is_int:
            return Integer(int(self.low), int(self.high), prior=prior, name=self.name)
        return Real(self.low, self.high, prior=prior, name=self.name)

    def narrowed(self, values, pad=0.1):
        """Coarse to fine: the span of `values` (the top trials' settings), padded by `pad` of
        that span on each side in the sampling space, never beyond the current range."""
        if not self.is_range or not values:
            return self
        if self.scale == "pow2":
            return Dim(self.name, min(values), max(values))
        forward, back = _TRANSFORMS[self.scale]
        lo, hi = forward(min(values)), forward(max(values))
        if self.scale == "1-log":
            lo, hi = hi, lo  # 1 - x reverses the order
        span = (hi - lo) or abs(hi) * 0.1 or 0.1
        new = sorted((back(lo - pad * span), back(hi + pad * span)))
        low, high = max(self.low, new[0]), min(self.high, new[1])
        if self.is_int:
            low, high = math.floor(low), math.ceil(high)
        if low >= high:
            return Dim(self.name, choices=(type(self.low)(low),))
        return Dim(self.name, low, high)


_TRANSFORMS = {
    "log": (math.log10, lambda v: 10 ** v),
    "1-log": (lambda v: math.log10(1 - v), lambda v: 1 - 10 ** v),
    "linear": (float, float),
}


def _fmt(value):
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value))
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        return f"{value:.4g}"
    return str(value)


def powers_of_two(low, high):
    return [2 ** k for k in range(0, 16) if low <= 2 ** k <= high]


class IntLogUniform:
    """Integers whose logarithm is uniform over [log low, log high] (e.g. hidden units)."""

    def __init__(self, low, high):
        self.low, self.high = int(low), int(high)

    def rvs(self, size=None, random_state=None):
        from scipy import stats

        # sample over [low - 0.5, high + 0.5) so both end integers get their share after rounding
        x = stats.loguniform(self.low - 0.5 if self.low > 1 else 1, self.high + 0.5).rvs(
            size=size, random_state=random_state)
        return np.clip(np.round(x), self.low, self.high).astype(int)


class OneMinusLogUniform:
    """b with log(1 - b) uniform: as many samples in 0.9..0.99 as in 0.99..0.999."""

    def __init__(self, low, high):
        self.low, self.high = low, high

    def rvs(self, size=None, random_state=None):
        from scipy import stats

        return 1 - stats.loguniform(1 - self.high, 1 - self.low).rvs(size=size, random_state=random_state)


def parse_dim(name, text, allow_range=True):
    """'lo:hi' -> range; 'a,b,c' -> choices; 'a' -> one choice (fixed)."""
    text = str(text).strip()
    if ":" in text:
        if not allow_range:
            raise UsageError(f"{flag(name)}: a grid takes a comma list of values, not a range ({text!r})")
        if common.hparam_type(name) in (bool, str):
            raise UsageError(f"{flag(name)}: {name} takes a comma list, not a range")
        parts = text.split(":")
        if len(parts) != 2 or not all(p.strip() for p in parts):
            raise UsageError(f"{flag(name)}: expected lo:hi, got {text!r}")
        low, high = (parse_value(name, p.strip()) for p in parts)
        if not low < high:
            raise UsageError(f"{flag(name)}: low must be below high, got {text!r}")
        if name in LOG_SCALE and low <= 0:
            raise UsageError(f"{flag(name)}: a log-uniform range needs bounds > 0, got {text!r}")
        if name in POWERS_OF_TWO and not powers_of_two(low, high):
            raise UsageError(f"{flag(name)}: no power of two in {text!r}")
        for bound in (low, high):
            _check_value(name, bound)
        return Dim(name, low, high)
    items = [t.strip() for t in text.split(",")]
    if not text or any(not t for t in items):
        raise UsageError(f"{flag(name)}: empty value in list {text!r}")
    values = tuple(dict.fromkeys(parse_value(name, t) for t in items))
    for value in values:
        _check_value(name, value)
    return Dim(name, choices=values)


def _check_value(name, value):
    """An impossible value (lr <= 0, beta >= 1, ...) is refused by HParams itself."""
    try:
        HParams(**{name: value})
    except UsageError as err:
        raise UsageError(f"{flag(name)}: {err}") from None


def build_space(defaults, overrides, allow_range):
    """Merges a method's default space with the user's flags.

    Returns (dims, fixed): a flag with one value fixes that hyperparameter for every trial."""
    texts = dict(defaults)
    texts.update(overrides)
    dims, fixed = [], {}
    for name, text in texts.items():
        if name not in HPARAM_NAMES:
            raise UsageError(f"unknown hyperparameter {name!r} (known: {', '.join(HPARAM_NAMES)})")
        if isinstance(text, (list, tuple)):
            if not text:
                raise UsageError(f"{flag(name)}: empty list")
            text = ",".join(str(v) for v in text)
        dim = parse_dim(name, text, allow_range)
        if not dim.is_range and len(dim.choices) == 1:
            fixed[name] = dim.choices[0]
        else:
            dims.append(dim)
    return dims, fixed


# --------------------------------------------------------------------------------------
# Trials: one training run each, logged as it finishes
# --------------------------------------------------------------------------------------


def params_key(params):
    return json.dumps({k: _plain(v) for k, v in sorted(params.items())})


def trial_key(params, fold):
    return f"{params_key(params)}|{fold}"


def fold_id(y):
    """Names a cross-validation training fold by its labels, the same in every run."""
    import hashlib

    return "cv-" + hashlib.sha1(np.ascontiguousarray(y).tobytes()).hexdigest()[:10]


def finished_trials(rows, names):
    """{trial key: row} of results.csv rows, for a resumed search to skip."""
    return {trial_key({n: _coerce(n, r[n]) for n in names}, r["fold"]): r for r in rows}


def _plain(value):
    return value.item() if isinstance(value, np.generic) else value


def duration(seconds):
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


class TrialLog:
    """Appends one row per finished trial to results.csv and prints a progress line.

    Safe across processes (trials run in parallel append under an flock), and each row is one
    write, so a crash loses at most the trials still running."""

    def __init__(self, path, names, total, start=None, verbose=True, done_before=0):
        self.path = str(path)
        self.names = list(names)
        self.total = total
        self.start = time.time() if start is None else start
        self.verbose = verbose
        self.done_before = done_before  # rows already there when a resumed search started
        self.queue = None  # name of the Dask queue that carries rows from workers (DaskRelay)

    @property
    def header(self):
        return ["trial", *self.names, "fold", "val_accuracy", "fit_seconds", "status", "message", "worker"]

    def create(self):
        if not os.path.exists(self.path):
            common.write_text(self.path, _csv_line(self.header))

    def rows(self):
        return read_results(self.path)

    def record(self, params, val_accuracy, fit_seconds, status="ok", message="", fold="validation",
               worker=None):
        worker = worker or f"{socket.gethostname()}:{os.getpid()}"
        if self.queue and _on_dask_worker():
            # the results file lives on the client's machine: send the row there (DaskRelay)
            from distributed import Queue

            Queue(self.queue).put({"params": {k: _plain(v) for k, v in params.items()},
                                   "val_accuracy": val_accuracy, "fit_seconds": fit_seconds,
                                   "status": status, "message": message, "fold": fold, "worker": worker})
            return None
        with open(self.path, "a+") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                handle.seek(0)
                done = _parse_rows(handle.read())
                trial = len(done) + 1
                scores = [r["val_accuracy"] for r in done if r["status"] == "ok"]
                if status == "ok":
                    scores.append(val_accuracy)
                row = [trial, *(_plain(params.get(n, "")) for n in self.names), fold,
                       f"{val_accuracy:.6f}" if math.isfinite(val_accuracy) else "nan",
                       f"{fit_seconds:.2f}", status, " ".join(str(message).split())[:300], worker]
                handle.write(_csv_line(row))
                handle.flush()
                os.fsync(handle.fileno())
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)
        if self.verbose:
            elapsed = time.time() - self.start
            eta = elapsed / max(trial - self.done_before, 1) * max(self.total - trial, 0)
            shown = " ".join(f"{n}={_fmt(params[n])}" for n in self.names if n in params)
            score = f"{val_accuracy:.4f}" if status == "ok" else status.upper()
            best = f"{max(scores):.4f}" if scores else "-"
            print(f"trial {trial}/{self.total}  {shown}  val_acc {score}  fit {fit_seconds:.1f}s  "
                  f"elapsed {duration(elapsed)}  ETA {duration(eta)}  best {best}", flush=True)
        return trial


def _on_dask_worker():
    if "distributed" not in sys.modules:
        return False
    from distributed import get_worker

    try:
        get_worker()
    except ValueError:
        return False
    return True


class DaskRelay:
    """While a search runs on a Dask cluster, carries the rows that workers send through a
    distributed.Queue into the client's results.csv and progress lines."""

    def __init__(self, client, log):
        import threading
        import uuid

        from distributed import Queue

        self.log = log
        self.log.queue = f"beans-tune-{uuid.uuid4().hex}"
        self.queue = Queue(self.log.queue, client=client)
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._relay, daemon=True)

    def _relay(self):
        # polls rather than blocking in get(timeout=...), whose time-outs the scheduler logs as errors
        while True:
            stopping = self.stopping.is_set()
            rows = self.queue.get(batch=True) if self.queue.qsize() else []
            for row in rows:
                self.log.record(**row)
            if stopping and not rows:
                return
            if not rows:
                time.sleep(0.2)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stopping.set()  # drain what is queued, then stop
        self.thread.join()
        self.log.queue = None
        return False


def _csv_line(values):
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerow(values)
    return buffer.getvalue()


def _parse_rows(text):
    lines = text.splitlines(keepends=True)
    if lines and not lines[-1].endswith("\n"):
        lines = lines[:-1]  # a crash mid-write leaves a truncated last line: ignore it
    rows = list(csv.DictReader(lines))
    for row in rows:
        row["val_accuracy"] = float(row["val_accuracy"])
        row["fit_seconds"] = float(row["fit_seconds"])
    return rows


def read_results(path):
    with open(path) as handle:
        return _parse_rows(handle.read())


def limit_threads(threads):
    """Caps TensorFlow's thread pools so that parallel trials do not oversubscribe the cores.

    Takes effect only before TensorFlow starts its runtime in this process (a fresh worker)."""
    if not threads:
        return
    import tensorflow as tf

    with contextlib.suppress(RuntimeError):  # runtime already initialised: keep its pools
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(min(threads, 2))


class TrialFailed(Exception):
    """A trial that ended without a score (NaN loss, time-out, error); already recorded."""


def run_trial(hp, train, val, seed, log, params, threads=None, timeout=None, record_ok=True,
              fold="validation"):
    """Trains one configuration and records it in `log`; returns common.train's result.

    A failure is recorded (status failed or timeout, with its message) and raised as TrialFailed.
    `record_ok=False` leaves recording a success to the caller (the estimator records its score)."""
    limit_threads(threads)
    start = time.perf_counter()
    try:
        result = common.train(hp, train, val, seed=seed, log=None, timeout=timeout)
    except Exception as err:  # noqa: BLE001 - a failed trial is recorded, the search goes on
        message = f"{err.__class__.__name__}: {err}"
        log.record(params, float("nan"), time.perf_counter() - start, "failed", message, fold)
        raise TrialFailed(message) from err
    seconds = time.perf_counter() - start  # building the model included, as in sklearn's fit_time
    result.seconds = seconds
    if result.status != "ok":
        if result.status == "timeout":
            status, message = "timeout", f"stopped after {timeout:g}s (--trial-timeout), epoch {result.epochs}"
        else:
            status, message = "failed", f"loss became NaN (epoch {result.epochs})"
        log.record(params, float("nan"), seconds, status, message, fold)
        raise TrialFailed(message)
    if record_ok:
        log.record(params, result.val_accuracy, seconds, fold=fold)
    return result


class BeansClassifier(ClassifierMixin, BaseEstimator):
    """scikit-learn estimator whose parameters are HParams' fields; `fit` calls common.train.

    `validation` (x, y) is the split used for early stopping; without it (K-fold CV) a
    stratified 10% of each training fold is held out for that. Pickles, so n_jobs works."""

    SETTINGS = ("validation", "seed", "trial_log", "searched", "threads", "trial_timeout", "finished")

    def __init__(self, validation=None, seed=0, trial_log=None, searched=(), threads=None,
                 trial_timeout=None, finished=None, **hparams):
        self.validation = validation
        self.seed = seed
        self.trial_log = trial_log
        self.searched = searched
        self.threads = threads
        self.trial_timeout = trial_timeout
        self.finished = finished  # {trial key: results.csv row} of a resumed search
        defaults = HParams()
        for name in HPARAM_NAMES:
            setattr(self, name, hparams.get(name, getattr(defaults, name)))

    @classmethod
    def _get_param_names(cls):
        return sorted((*cls.SETTINGS, *HPARAM_NAMES))

    def hparams(self):
        return HParams(**{n: _plain(getattr(self, n)) for n in HPARAM_NAMES})

    def fit(self, X, y):
        if self.validation is not None:
            train, val = common.Split(X, y), common.Split(*self.validation)
        else:
            from sklearn.model_selection import train_test_split

            holdout = max(math.ceil(0.1 * len(y)), len(common.CLASS_NAMES))  # >= 1 image per class
            x_fit, x_val, y_fit, y_val = train_test_split(X, y, test_size=holdout, stratify=y,
                                                          random_state=self.seed)
            train, val = common.Split(x_fit, y_fit), common.Split(x_val, y_val)
        self.params_ = {n: getattr(self, n) for n in self.searched}
        self.fold_ = fold_id(y) if self.validation is None else "validation"
        self.classes_ = np.arange(len(common.CLASS_NAMES))
        done = (self.finished or {}).get(trial_key(self.params_, self.fold_))
        if done is not None:  # resumed search: this trial finished before, do not train it again
            if done["status"] != "ok":
                raise TrialFailed(done["message"])
            self.cached_score_ = done["val_accuracy"]
            return self
        self.cached_score_ = None
        self.result_ = run_trial(self.hparams(), train, val, self.seed, self.trial_log, self.params_,
                                 self.threads, self.trial_timeout, record_ok=False, fold=self.fold_)
        self.model_ = self.result_.model
        return self

    def score(self, X, y, sample_weight=None):
        """Accuracy, recorded in the trial log. On the validation split itself this is the accuracy
        train() measured there for the weights it kept: no second pass, no predict graph trace."""
        if self.cached_score_ is not None:
            return self.cached_score_
        if (sample_weight is None and self.validation is not None
                and len(y) == len(self.validation[1]) and np.array_equal(y, self.validation[1])
                and np.array_equal(X, self.validation[0])):
            accuracy = self.result_.val_accuracy
        else:
            accuracy = super().score(X, y, sample_weight)
        if self.trial_log is not None:
            self.trial_log.record(self.params_, accuracy, self.result_.seconds, fold=self.fold_)
        return accuracy

    def predict(self, X):
        probabilities = self.model_.predict(X, batch_size=128, verbose=0)
        return self.classes_[np.argmax(probabilities, axis=1)]


# --------------------------------------------------------------------------------------
# Searches
# --------------------------------------------------------------------------------------


@dataclass
class Trial:
    params: dict
    val_accuracy: float
    std: float
    fit_seconds: float
    status: str = "ok"
    message: str = ""


@dataclass
class Context:
    """What a search method needs: data, space and settings."""

    train: common.Split
    validation: common.Split
    dims: list
    base: HParams
    seed: int
    n_jobs: int
    cv: int
    log: TrialLog
    args: object
    out: Path
    threads: int = None
    trial_timeout: float = None
    finished: dict = None
    distributed: bool = False  # trials run on a Dask cluster

    def backend(self, data):
        """joblib's dask backend when on a cluster, with `data` copied to every worker up front:
        sent once per worker, and still there on the others when one worker dies."""
        if not self.distributed:
            return contextlib.nullcontext()
        import joblib

        return joblib.parallel_backend("dask", scatter=list(data))

    @property
    def names(self):
        return [d.name for d in self.dims]


def sklearn_search(ctx, search_cls, space_arg, space, **kwargs):
    """Runs GridSearchCV or RandomizedSearchCV over the train split, scored on validation."""
    from sklearn.model_selection import PredefinedSplit, StratifiedKFold

    X = np.concatenate([ctx.train.x, ctx.validation.x])
    y = np.concatenate([ctx.train.y, ctx.validation.y])
    if ctx.cv:
        cv, validation = StratifiedKFold(ctx.cv, shuffle=True, random_state=ctx.seed), None
    else:  # exactly the canonical validation split as the one test fold
        cv = PredefinedSplit(np.r_[np.full(len(ctx.train), -1), np.zeros(len(ctx.validation), int)])
        validation = (ctx.validation.x, ctx.validation.y)
    estimator = BeansClassifier(validation=validation, seed=ctx.seed, trial_log=ctx.log,
                                searched=tuple(ctx.names), threads=ctx.threads,
                                trial_timeout=ctx.trial_timeout, finished=ctx.finished, **ctx.base.to_dict())
    search = search_cls(estimator, **{space_arg: space}, scoring=None, cv=cv, refit=False,
                        n_jobs=ctx.n_jobs, error_score=np.nan, pre_dispatch="n_jobs", **kwargs)
    with warnings.catch_warnings(), ctx.backend([X, y]):
        warnings.simplefilter("ignore")  # failed fits are in the table, not in a warning wall
        try:
            search.fit(X, y)
        except ValueError as err:
            if "fits failed" not in str(err):
                raise
            return trials_from_log(ctx.log.rows(), ctx.names)  # every fit failed: all are logged
    return trials_from_cv_results(search.cv_results_, ctx.log.rows())


def evaluate_point(base, params, train, val, seed, log, threads=None, timeout=None):
    """One Bayesian-optimization trial: the validation accuracy, or 0.0 if the trial failed
    (a finite penalty: a NaN or infinite objective would break the GP fit)."""
    hp = dataclasses.replace(base, **params)
    try:
        return run_trial(hp, train, val, seed, log, params, threads, timeout).val_accuracy
    except TrialFailed:  # recorded as failed (or timeout) by run_trial
        return 0.0


def gp_optimizer(space, n_initial_points, seed):
    """skopt.Optimizer set up exactly as gp_minimize sets up its own (GP, EI, same defaults)."""
    from sklearn.utils import check_random_state
    from skopt import Optimizer
    from skopt.utils import cook_estimator, normalize_dimensions

    rng = check_random_state(seed)
    space = normalize_dimensions(space)
    gp = cook_estimator("GP", space=space, random_state=rng.randint(0, np.iinfo(np.int32).max),
                        noise="gaussian")
    return Optimizer(space, gp, n_initial_points=n_initial_points, acq_func="EI", acq_optimizer="auto",
                     random_state=rng, acq_optimizer_kwargs={"n_points": 10000, "n_restarts_optimizer": 5,
                                                             "n_jobs": 1},
                     acq_func_kwargs={"xi": 0.01, "kappa": 1.96})


def minimize(objective, space, n_calls, n_initial_points, seed, n_jobs=1, evaluate_batch=None,
             x0=None, y0=None, batches=False):
    """skopt.gp_minimize(acq_func="EI") when n_jobs == 1; otherwise the same optimizer asked for
    n_jobs points per step (constant liar, cl_min) and told their values together.

    `x0`/`y0` are points already evaluated (a resumed search): they count towards n_calls and
    towards the initial random points."""
    from skopt import gp_minimize

    x0, y0 = list(x0 or []), list(y0 or [])
    n_initial_points = min(n_initial_points, n_calls)
    remaining = n_calls - len(x0)
    if n_jobs == 1 and remaining > 0 and not batches:
        return gp_minimize(objective, space, acq_func="EI", n_calls=remaining,
                           n_initial_points=max(n_initial_points - len(x0), 0), random_state=seed,
                           x0=x0 or None, y0=y0 or None)
    evaluate_batch = evaluate_batch or (lambda points: [objective(p) for p in points])
    optimizer = gp_optimizer(space, max(n_initial_points - len(x0), 0) if x0 else n_initial_points, seed)
    result = optimizer.tell(x0, y0) if x0 else None
    while len(optimizer.Xi) < n_calls:
        points = optimizer.ask(n_points=min(n_jobs, n_calls - len(optimizer.Xi)), strategy="cl_min")
        result = optimizer.tell(points, list(evaluate_batch(points)))
    return result


def bayes_search(ctx):
    """tune_bayes.py's search: GP + EI over ctx.dims, trials recorded by the shared TrialLog.

    On resume the finished trials are handed to the optimizer as x0/y0 and not trained again."""
    import joblib

    args, names = ctx.args, ctx.names
    space = [d.skopt() for d in ctx.dims]
    done = ctx.log.rows()
    x0 = [[_coerce(n, r[n]) for n in names] for r in done]
    y0 = [1.0 - r["val_accuracy"] if r["status"] == "ok" else 1.0 for r in done]

    def params_of(point):
        return {n: _plain(v) for n, v in zip(names, point)}

    def evaluate(point):
        return evaluate_point(ctx.base, params_of(point), ctx.train, ctx.validation, ctx.seed, ctx.log,
                              ctx.threads, ctx.trial_timeout)

    def objective(point):
        return 1.0 - evaluate(point)

    with ctx.backend([ctx.train, ctx.validation]), joblib.Parallel(n_jobs=ctx.n_jobs) as parallel:
        def evaluate_batch(points):
            accuracies = parallel(joblib.delayed(evaluate_point)(
                ctx.base, params_of(p), ctx.train, ctx.validation, ctx.seed, ctx.log, ctx.threads,
                ctx.trial_timeout) for p in points)
            return [1.0 - a for a in accuracies]

        result = minimize(objective, space, args.n_calls, args.n_initial_points, ctx.seed,
                          n_jobs=ctx.n_jobs, evaluate_batch=evaluate_batch, x0=x0, y0=y0,
                          batches=ctx.distributed)
    plot_bayes(ctx.out, result, names)
    return trials_from_log(ctx.log.rows(), names)


def plot_bayes(out, result, names):
    """skopt's convergence trace and partial-dependence (objective) plots, as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    from skopt.plots import plot_convergence, plot_objective

    ax = plot_convergence(result)
    common.save_figure(Path(out) / "convergence.png", ax.figure)
    if result.models:  # the GP exists only once the initial random points are done
        axes = plot_objective(result, dimensions=names)
        common.save_figure(Path(out) / "objective.png", np.ravel(axes)[0].figure)
    else:
        print("objective.png not written: no GP was fitted (n_calls <= n_initial_points)")


def trials_from_log(rows, names):
    return [Trial({n: _coerce(n, r[n]) for n in names}, r["val_accuracy"], float("nan"), r["fit_seconds"],
                  r["status"], r["message"]) for r in rows]


def trials_from_cv_results(results, log_rows):
    """One Trial per configuration: scores from scikit-learn, fit times and failure messages from
    the trial log (a resumed search's skipped fits took no time in this run)."""
    logged = {}
    for row in log_rows:
        logged.setdefault(params_key({k: _coerce(k, row[k]) for k in row if k in HPARAM_NAMES}), []).append(row)
    trials = []
    for i, params in enumerate(results["params"]):
        score = float(results["mean_test_score"][i])
        rows = logged.get(params_key(params), [])
        fit = float(np.mean([r["fit_seconds"] for r in rows])) if rows else float(results["mean_fit_time"][i])
        trial = Trial(dict(params), score, float(results["std_test_score"][i]), fit)
        if not math.isfinite(score):
            failed = next((r for r in rows if r["status"] != "ok"), {})
            trial.status = failed.get("status", "failed")
            trial.message = failed.get("message", "")
        trials.append(trial)
    return trials


def _coerce(name, text):
    return parse_value(name, text) if text != "" else text


def rank(trials):
    """Best first; failed trials last."""
    return sorted(trials, key=lambda t: (not math.isfinite(t.val_accuracy),
                                         -t.val_accuracy if math.isfinite(t.val_accuracy) else 0))


def format_trials(trials, names, top=10, cv=False):
    headers = ["rank", *names, "val_acc"] + (["std"] if cv else []) + ["fit_s", "status"]
    rows = []
    for i, t in enumerate(rank(trials)[:top], 1):
        score = f"{t.val_accuracy:.4f}" if math.isfinite(t.val_accuracy) else "nan"
        std = [f"{t.std:.4f}" if math.isfinite(t.std) else "nan"] if cv else []
        rows.append([i, *(_fmt(t.params.get(n, "")) for n in names), score, *std, f"{t.fit_seconds:.1f}",
                     t.status if not t.message else f"{t.status}: {t.message[:40]}"])
    return common.format_table(headers, rows)


@dataclass(frozen=True)
class Method:
    """What distinguishes tune_grid, tune_random and tune_bayes."""

    script: str
    description: str
    default_space: dict
    allow_range: bool
    add_flags: object      # (parser) -> None
    count: object          # (args, dims) -> number of trainings the search will run
    search: object         # (ctx) -> list[Trial]
    sklearn: bool = True   # takes --cv


def tuning_parser(method):
    parser = common.ArgumentParser(prog=f"{method.script}.py", description=method.description)
    common.add_run_flags(parser)
    parser.add_argument("--n-jobs", type=int, default=1, help="trials run in N processes (default: 1)")
    if method.sklearn:
        parser.add_argument("--cv", type=int, default=None, metavar="K",
                            help="K-fold CV over train+validation instead of the validation split")
    parser.add_argument("--top", type=int, default=10, help="rows in the ranked table (default: 10)")
    parser.add_argument("--trial-timeout", type=float, default=None, metavar="SECONDS",
                        help="stop a trial running longer and record it as 'timeout' (default: none)")
    parser.add_argument("--scheduler", metavar="ADDRESS", default=None,
                        help="run the trials on an existing Dask cluster, e.g. tcp://10.0.0.5:8786 "
                             "(see README: Scaling out)")
    parser.add_argument("--threads-per-trial", type=int, default=None, metavar="N",
                        help="TensorFlow threads per trial (default: cores / n-jobs for local "
                             "processes; TensorFlow's own choice on Dask workers)")
    parser.add_argument("--overwrite", action="store_true",
                        help="start afresh in an --out that holds a different search")
    method.add_flags(parser)
    group = parser.add_argument_group(
        "hyperparameters", "each takes one value (fixed), a comma list (choices)"
        + (", or lo:hi (a range)" if method.allow_range else ""))
    for name in HPARAM_NAMES:
        group.add_argument(flag(name), default=None, metavar="SPEC",
                           help=f"default: {method.default_space.get(name, getattr(HParams(), name))}")
    return parser


def run(argv, method):
    """The whole run of a tuning script: flags, search, table, final model, files."""
    prog = f"{method.script}.py"
    args = tuning_parser(method).parse_args(argv)
    common.check_run_args(args)
    if args.n_jobs < 1:
        raise UsageError(f"--n-jobs must be >= 1, got {args.n_jobs}")
    if getattr(args, "cv", None) is not None and args.cv < 2:
        raise UsageError(f"--cv must be >= 2, got {args.cv}")
    if args.top < 1:
        raise UsageError(f"--top must be >= 1, got {args.top}")
    overrides = {n: getattr(args, n) for n in HPARAM_NAMES if getattr(args, n) is not None}
    defaults = method.default_space
    if getattr(args, "grid", None):
        defaults = {**TRIAL_BUDGET, **load_grid(args.grid)}
    dims, fixed = build_space(defaults, overrides, method.allow_range)
    if not dims:
        raise UsageError("nothing to search: every hyperparameter has a single value")
    base = HParams(**fixed)
    total = method.count(args, dims)
    if args.trial_timeout is not None and not args.trial_timeout > 0:
        raise UsageError(f"--trial-timeout must be > 0, got {args.trial_timeout}")
    beans = common.Beans(args.data_dir, image_size=args.image_size, limit=args.limit, seed=args.seed)
    out = Path(args.out) if args.out else common.default_out(method.script)
    manifest = search_manifest(method, args, dims, base, beans)
    resumed = check_out(out, manifest, args.overwrite)
    train, validation = beans.train, beans.validation
    if args.threads_per_trial is not None and args.threads_per_trial < 1:
        raise UsageError(f"--threads-per-trial must be >= 1, got {args.threads_per_trial}")
    stack = contextlib.ExitStack()
    n_jobs, where = args.n_jobs, "local processes" if args.n_jobs > 1 else "this process"
    threads = args.threads_per_trial
    if args.scheduler:
        client = stack.enter_context(connect_dask(args.scheduler))
        workers = sum(client.nthreads().values())
        n_jobs = args.n_jobs if args.n_jobs > 1 else max(workers, 1)
        where = f"Dask at {args.scheduler} ({len(client.nthreads())} workers, {workers} threads)"
    elif args.n_jobs > 1 and threads is None:
        threads = max(1, (os.cpu_count() or 1) // args.n_jobs)
    common.print_config(f"{prog}: resolved configuration", {
        "data": beans.source, "train / validation images": f"{len(train)} / {len(validation)}",
        "image size": args.image_size, "seed": args.seed, "out": out,
        "scoring": f"{args.cv}-fold CV over train+validation" if getattr(args, "cv", None)
        else "accuracy on the validation split",
        "trainings": total, "trials run in": where,
        "parallel trials": n_jobs if not threads else f"{n_jobs} ({threads} threads each)",
        **({"trial timeout": f"{args.trial_timeout:g}s"} if args.trial_timeout else {}),
        **{f"search {d.name}": d.describe() for d in dims},
        **{k: v for k, v in base.to_dict().items() if k not in {d.name for d in dims}}})
    names = [d.name for d in dims]
    if resumed:
        print(f"resuming: {len(resumed)} of {total} trainings are in {out / 'results.csv'} and will not "
              "be trained again", flush=True)
    else:
        out.mkdir(parents=True, exist_ok=True)
        common.write_json(out / "search.json", manifest)
    log = TrialLog(out / "results.csv", names, total, done_before=len(resumed))
    log.create()
    ctx = Context(train=train, validation=validation, dims=dims, base=base, seed=args.seed,
                  n_jobs=n_jobs, cv=getattr(args, "cv", None), log=log, args=args, out=out,
                  threads=threads, trial_timeout=args.trial_timeout, finished=finished_trials(resumed, names),
                  distributed=bool(args.scheduler))
    start = time.perf_counter()
    try:
        with stack:
            if args.scheduler:
                stack.enter_context(DaskRelay(client, log))
            trials = method.search(ctx)
    except KeyboardInterrupt:
        rows = log.rows()
        print(f"\n{prog}: interrupted; {len(rows)} of {total} trainings are saved in {out / 'results.csv'}. "
              "Run the same command again to resume.")
        if rows:
            print(format_trials(trials_from_log(rows, names), names, args.top))
        raise
    search_seconds = time.perf_counter() - start
    fit_total = sum(r["fit_seconds"] for r in log.rows())
    print(f"\n{prog}: {len(trials)} configurations, {len(log.rows())} trainings in {duration(search_seconds)} "
          f"(sum of fit times {duration(fit_total)}{', this run and before' if resumed else ''})")
    print(format_trials(trials, names, args.top, cv=bool(ctx.cv)))
    plot_scores(out / "val_accuracy.png", trials, dims)
    finish(prog, out, beans, base, trials, names, args.seed, search_seconds, method.script)


def connect_dask(address):
    """A distributed.Client for an existing scheduler; one clear line if it cannot be reached."""
    try:
        from distributed import Client
    except ImportError:
        raise UsageError("--scheduler needs dask[distributed]: pip install 'dask[distributed]'") from None
    try:
        return Client(address, timeout=10)
    except (OSError, TimeoutError, ValueError) as err:
        raise UsageError(f"--scheduler: cannot reach a Dask scheduler at {address} ({err.__class__.__name__})") from None


OUTPUTS = ("search.json", "results.csv", "best.json", "model.keras", "val_accuracy.png", "convergence.png",
           "objective.png")


def search_manifest(method, args, dims, base, beans):
    """What makes two runs the same search: resuming is allowed only when this matches."""
    return {
        "script": method.script,
        "space": {d.name: d.describe() for d in dims},
        "fixed": base.to_dict(),
        "data": beans.source, "image_size": beans.image_size, "limit": beans.limit, "seed": args.seed,
        "cv": getattr(args, "cv", None),
        "method": {k: getattr(args, k) for k in ("n_iter", "refine", "keep", "n_calls", "n_initial_points")
                   if hasattr(args, k)},
    }


def check_out(out, manifest, overwrite):
    """Returns the finished rows of a search to resume in `out` ([] for a fresh start).

    An --out holding a different search is refused; --overwrite clears the folder's outputs."""
    manifest_path, results_path = out / "search.json", out / "results.csv"
    if overwrite:  # start afresh, whatever the folder holds
        for name in OUTPUTS:
            (out / name).unlink(missing_ok=True)
        return []
    if not manifest_path.exists() and not results_path.exists():
        return []
    same = False
    if manifest_path.exists():
        try:
            same = json.loads(manifest_path.read_text()) == json.loads(json.dumps(manifest))
        except json.JSONDecodeError:
            same = False
    if same and results_path.exists():
        return read_results(results_path)
    if same:
        return []
    held = "a different search" if manifest_path.exists() else "results of an unknown search"
    raise UsageError(f"{out} holds {held} (other method, space or data); "
                     "choose another --out or pass --overwrite")


def finish(prog, out, beans, base, trials, names, seed, search_seconds, script):
    """Retrains the best configuration on train (early-stopped on validation), evaluates it once
    on the test split, saves model.keras and best.json."""
    ok = [t for t in rank(trials) if t.status == "ok"]
    if not ok:
        raise UsageError("every trial failed; see results.csv for their messages")
    best = ok[0]
    hp = dataclasses.replace(base, **{k: _plain(v) for k, v in best.params.items()})
    print(f"\nbest: {' '.join(f'{n}={_fmt(best.params[n])}' for n in names)}  "
          f"(val_acc {best.val_accuracy:.4f}); retraining on the train split", flush=True)
    final = common.train(hp, beans.train, beans.validation, seed=seed, log=lambda l: print(l, flush=True))
    test_accuracy = common.evaluate(final.model, beans.test)  # the test split's one reading
    common.save_model(out / "model.keras", final.model)
    common.write_json(out / "best.json", {
        "script": script, "params": {k: _plain(v) for k, v in best.params.items()},
        "hparams": hp.to_dict(), "val_accuracy": best.val_accuracy,
        "final_val_accuracy": final.val_accuracy, "test_accuracy": test_accuracy,
        "final_epochs": final.epochs, "trials": len(trials), "search_seconds": round(search_seconds, 1),
        "seed": seed, "image_size": beans.image_size, "data": beans.source, "limit": beans.limit,
    })
    print()
    print(common.format_table(["model", "val_accuracy (search)", "val_accuracy (final)", "test_accuracy", "epochs"],
                              [["best", f"{best.val_accuracy:.4f}", f"{final.val_accuracy:.4f}",
                                f"{test_accuracy:.4f}", final.epochs]]))
    print(f"\nwrote {out}/")
    return test_accuracy


def load_grid(path):
    try:
        grid = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise UsageError(f"--grid: file not found: {path}") from None
    except json.JSONDecodeError as err:
        raise UsageError(f"--grid: not valid JSON ({path}: {err})") from None
    if not isinstance(grid, dict) or not grid:
        raise UsageError(f"--grid: expected a JSON object of hyperparameter: [values] in {path}")
    for name, values in grid.items():
        if name not in HPARAM_NAMES:
            raise UsageError(f"--grid: unknown hyperparameter {name!r} in {path} (known: {', '.join(HPARAM_NAMES)})")
        if not isinstance(values, list) or not values:
            raise UsageError(f"--grid: {name} needs a non-empty list of values in {path}")
    return grid


def plot_scores(path, trials, dims):
    """Validation accuracy against each searched hyperparameter; log axes where sampled in log."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ok = [t for t in trials if math.isfinite(t.val_accuracy)]
    cols = min(3, len(dims))
    rows = math.ceil(len(dims) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.4 * rows), squeeze=False)
    best = rank(ok)[0] if ok else None
    for ax, dim in zip(axes.flat, dims):
        values = [_plain(t.params[dim.name]) for t in ok]
        if dim.scale == "1-log":
            values = [1 - v for v in values]
        xs = [float(v) if not isinstance(v, str) else v for v in values]
        ax.scatter(xs, [t.val_accuracy for t in ok], alpha=0.7)
        if best is not None:
            bx = _plain(best.params[dim.name])
            bx = 1 - bx if dim.scale == "1-log" else bx
            ax.scatter([bx], [best.val_accuracy], color="C3", marker="*", s=160, label="best")
        if dim.scale in ("log", "1-log", "pow2") and all(isinstance(v, (int, float)) and v > 0 for v in xs):
            ax.set_xscale("log", base=2 if dim.scale == "pow2" else 10)
        ax.set_xlabel(f"1 - {dim.name}" if dim.scale == "1-log" else dim.name)
        ax.set_ylabel("validation accuracy")
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(dims):]:
        ax.axis("off")
    fig.tight_layout()
    common.save_figure(path, fig)
