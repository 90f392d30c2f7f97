"""The two kinds of search, over a `Problem` (data, base hyperparameters, where trials run):

- `sklearn_search`: GridSearchCV or RandomizedSearchCV; scikit-learn proposes the candidates
  and runs them through `BeansClassifier`.
- `bayes_search`: ONE ask/tell loop over a scikit-optimize `Optimizer` configured exactly as
  `skopt.gp_minimize(acq_func="EI")` configures its own; it asks for one point per step, or for
  `n_jobs` points (constant liar) when trials run in parallel.

Results are not returned: every trial's result is in the trial store, and read from there.
"""

import dataclasses
import inspect
import itertools
import math
import warnings
from dataclasses import dataclass

import numpy as np

import cli
import common

from . import scoring
from .execution import Execution
from .runner import BeansClassifier, Holdout, TrialSettings, run_point
from .space import plain
from .store import OK, trial_key


@dataclass(frozen=True)
class Problem:
    """What a search needs: the data it may see, the space, the fixed hyperparameters, and how
    and where its trials run."""

    train: common.Split
    validation: common.Split
    dims: tuple
    base: common.HParams
    settings: TrialSettings
    execution: Execution = dataclasses.field(default_factory=Execution)

    @property
    def names(self):
        return [d.name for d in self.dims]


@dataclass
class SearchOutput:
    """What a search leaves besides its results (those are in the store): figures it can draw."""

    figures: dict = dataclasses.field(default_factory=dict)  # {file name: () -> matplotlib figure}


def sklearn_search(problem, search_cls, space, cv=None, **kwargs):
    """Runs `search_cls` (GridSearchCV, RandomizedSearchCV or their halving kin) over the train
    split, scored on the validation split, or with `cv` K folds over train+validation. Returns
    the candidates (with a halving search, every rung's)."""
    from sklearn.model_selection import PredefinedSplit, StratifiedKFold

    X, y = _pooled(problem.train, problem.validation)
    if cv:
        test_fold = np.empty(len(y), int)
        for k, (_, rows) in enumerate(StratifiedKFold(cv, shuffle=True, random_state=problem.settings.seed)
                                      .split(X, y)):
            test_fold[rows] = k
        validation = None
    else:  # exactly the canonical validation split as the one test fold
        test_fold = np.r_[np.full(len(problem.train), -1), np.zeros(len(problem.validation), int)]
        validation = Holdout(problem.validation.x, problem.validation.y)
    estimator = BeansClassifier(**problem.base.to_dict(), trials=problem.settings)
    accepted = inspect.signature(search_cls).parameters
    extra = {"pre_dispatch": "n_jobs"} if "pre_dispatch" in accepted else {}
    if "return_train_score" in accepted:
        extra["return_train_score"] = False  # never score a trial on its own training images
    search = search_cls(estimator, space, scoring=None, cv=PredefinedSplit(test_fold), refit=False,
                        n_jobs=problem.execution.n_jobs, error_score=np.nan, **extra, **kwargs)
    with warnings.catch_warnings(), problem.execution.joblib_backend(scatter=[X, y]):
        warnings.simplefilter("ignore")  # failed trials are in the table, not in a warning wall
        search.fit(X, y, test_fold=test_fold, validation=validation)
    problem.execution.drain()
    return [{k: plain(v) for k, v in params.items()} for params in search.cv_results_["params"]]


_POOLED = []  # [(train, validation, X, y)]: one copy, whichever rounds or reruns a search makes


def _pooled(train, validation):
    """Train and validation images in one array, as scikit-learn's splitters want them."""
    if not (_POOLED and _POOLED[0][0] is train and _POOLED[0][1] is validation):
        _POOLED[:] = [(train, validation, np.concatenate([train.x, validation.x]),
                       np.concatenate([train.y, validation.y]))]
    return _POOLED[0][2:]


def gp_optimizer(space, n_initial_points, seed):
    """skopt.Optimizer set up as gp_minimize(acq_func="EI") sets up its own: the same GP
    (cook_estimator, noise="gaussian", its seed drawn first from the same random state), EI
    with xi=0.01, 10,000 sampled points and 5 L-BFGS restarts for the acquisition.

    acq_optimizer="auto" resolves to gp_minimize's "lbfgs" wherever gp_minimize runs at all; on
    an all-categorical space, where gp_minimize refuses "lbfgs", it samples instead."""
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


def ask_tell(optimizer, evaluate, n_calls, n_points=1):
    """Asks, evaluates, tells until the optimizer holds `n_calls` points (points told before,
    as in a resumed search, count). One point per step is gp_minimize's own loop; more is the
    constant-liar batch (cl_min). `evaluate(points) -> objective values`. Returns skopt's result."""
    result = None
    while len(optimizer.Xi) < n_calls:
        k = min(n_points, n_calls - len(optimizer.Xi))
        points = [optimizer.ask()] if k == 1 else optimizer.ask(n_points=k, strategy="cl_min")
        result = optimizer.tell(points, list(evaluate(points)))
    return result


def bayes_search(problem, n_calls, n_initial_points):
    """GP + EI over the problem's space, minimizing 1 - validation accuracy. A trial without a
    score costs accuracy 0 (a finite penalty: NaN would break the GP fit).

    Every proposal the store can answer is answered from it, not trained: a point the GP
    proposes again, and, on resume, the points of the interrupted run, which the same seed and
    the same points per step propose again in the same order (scores are stored to the last
    digit, so the GP is told exactly what it was told before). A resumed search therefore
    replays the uninterrupted one and trains only what is missing. Returns skopt's result."""
    names = problem.names
    known = {}  # {trial key: objective} of every point with a result so far
    for row in problem.settings.store.latest().values():
        if problem.settings.finished(row["params"], row["fold"]) is not None:
            known[trial_key(row["params"], row["fold"])] = _objective(row["status"], row["val_accuracy"])

    def evaluate(points):
        params = [{n: plain(v) for n, v in zip(names, p)} for p in points]
        keys = [trial_key(p, "validation") for p in params]
        new = {k: p for k, p in zip(keys, params) if k not in known}
        outcomes = problem.execution.map(run_point, new.values(), problem.base, problem.train,
                                         problem.validation, problem.settings)
        known.update({k: _objective(o.status, o.val_accuracy) for k, o in zip(new, outcomes)})
        problem.execution.drain()
        return [known[k] for k in keys]

    optimizer = gp_optimizer([d.skopt() for d in problem.dims], min(n_initial_points, n_calls),
                             problem.settings.seed)
    every = _every_point(problem.dims)
    if every is not None and len(every) <= n_calls:  # a space this small is searched whole
        return optimizer.tell(every, evaluate(every))
    with warnings.catch_warnings():
        # "The objective has been evaluated at this point before": answered from the store
        warnings.filterwarnings("ignore", message="The objective has been evaluated")
        return ask_tell(optimizer, evaluate, n_calls, problem.execution.n_jobs)


def _every_point(dims):
    """All points of a finite space, or None."""
    values = [d.values() for d in dims]
    if any(v is None for v in values) or math.prod(len(v) for v in values) > 10**4:
        return None
    return [list(p) for p in itertools.product(*values)]


def _objective(status, val_accuracy):
    return 1.0 - val_accuracy if status == OK else 1.0


def add_cv_flag(parser):
    """--cv K, for the scikit-learn searches."""
    parser.add_argument("--cv", type=cli.number(int, 2, 100), default=None, metavar="K",
                        help="K-fold CV over train+validation instead of the validation split (range [2, 100])")


def check_cv_folds(args, train, validation):
    """--cv K needs K images of every class in train+validation, and each training fold needs
    two of every class, so that a tenth can be held out for early stopping."""
    if not args.cv:
        return
    fewest = int(np.bincount(np.concatenate([train.y, validation.y]), minlength=len(common.CLASS_NAMES)).min())
    if fewest < args.cv or fewest - math.ceil(fewest / args.cv) < 2:
        raise common.UsageError(f"--cv {args.cv}: the smallest class holds {fewest} images in train+validation; "
                                f"K-fold needs at least K and 2 left in each training fold (try a smaller --cv "
                                "or a larger --limit)")


def describe_cv(args):
    return {"scoring": f"{args.cv}-fold CV over train+validation, each fold's accuracy" if args.cv
            else scoring.describe(args.score)}
