"""The searches, each a way of proposing candidates to `problem.evaluate` (tuning.evaluate), the
one path every training takes:

- `grid_search`: every combination, in the order of scikit-learn's ParameterGrid (the candidates
  GridSearchCV runs);
- `random_search`: scikit-learn's ParameterSampler (RandomizedSearchCV's candidates), in rounds
  over narrowed ranges with --refine (coarse to fine);
- `bayes_search`: ONE ask/tell loop over a scikit-optimize `Optimizer` configured exactly as
  `skopt.gp_minimize(acq_func="EI")` configures its own; it asks for one point per step, or for
  `n_jobs` points (constant liar) when trials run in parallel;
- successive halving: tuning.halving.

Each returns a SearchOutput: the figures it can draw. Every result is in the store.
"""

import dataclasses
import itertools
import math
import warnings
from dataclasses import dataclass

import numpy as np

from .. import cli, hparams
from .space import plain
from .store import OK, PRUNED, rank, trials_of

BEST_EPOCH = "the best epoch's validation accuracy"  # how a trial on the validation split is scored


@dataclass(frozen=True)
class Problem:
    """What a search needs: the space, the evaluate path, the fixed hyperparameters, the seed, how
    many trainings run at once (points per Bayesian step), and how a round's table is shown."""

    dims: tuple
    evaluate: object                 # tuning.evaluate.Evaluator: candidates -> rows
    base: hparams.HParams = hparams.HParams()
    seed: int = 0
    n_jobs: int = 1
    show: object = None              # (trials) -> the table of a refine round

    @property
    def names(self):
        return [d.name for d in self.dims]


@dataclass
class SearchOutput:
    """What a search leaves besides its results (those are in the store): figures it can draw."""

    figures: dict = dataclasses.field(default_factory=dict)  # {file name: () -> matplotlib figure}


def grid(dims, seeds=()):
    """Every combination, as scikit-learn's ParameterGrid (and so GridSearchCV) orders them; with
    `seeds`, each combination once per seed (tune_grid.py --repeats)."""
    from sklearn.model_selection import ParameterGrid

    space = {d.name: list(d.choices) for d in dims}
    if seeds:
        space["seed"] = list(seeds)
    return [{k: plain(v) for k, v in c.items()} for c in ParameterGrid(space)]


def sample(dims, n_iter, seed):
    """`n_iter` candidates as scikit-learn's ParameterSampler (and so RandomizedSearchCV with
    this random_state) draws them: without replacement from a space of lists only."""
    from sklearn.model_selection import ParameterSampler

    space = {d.name: d.scipy() for d in dims}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "the total space is smaller than n_iter": the count says so
        return [{k: plain(v) for k, v in c.items()} for c in ParameterSampler(space, n_iter, random_state=seed)]


def grid_search(problem, seeds=()):
    problem.evaluate(grid(problem.dims, seeds))
    return SearchOutput()


def random_search(problem, n_iter, refine=0, keep=0.3):
    """`refine` + 1 rounds of `n_iter` candidates, round r drawn with seed + r; after each round,
    every range narrows to the span of its best `keep` fraction of trials (at least 2)."""
    dims = list(problem.dims)
    for round_ in range(refine + 1):
        if round_:
            print(f"\nround {round_ + 1}/{refine + 1} ranges: "
                  + "  ".join(f"{d.name} {d.describe()}" for d in dims), flush=True)
        candidates = sample(dims, n_iter, problem.seed + round_)
        trials = trials_of(problem.evaluate(candidates))
        if refine:
            print(f"\nround {round_ + 1}/{refine + 1}: best of {len(candidates)}")
            print(problem.show(trials))
        top = [t for t in rank(trials) if t.status == OK][:max(2, math.ceil(keep * len(trials)))]
        dims = [d.narrowed([t.params[d.name] for t in top]) for d in dims]
    return SearchOutput()


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
    """GP + EI over the problem's space, minimizing 1 - validation accuracy. A pruned trial is
    told its score so far; a trial without a score costs accuracy 0 (a finite penalty: NaN would
    break the GP fit).

    Every proposal the store can answer is answered from it, not trained: a point the GP
    proposes again, and, on resume, the points of the interrupted run, which the same seed and
    the same points per step propose again in the same order (scores are stored to the last
    digit, so the GP is told exactly what it was told before). A resumed search therefore
    replays the uninterrupted one and trains only what is missing. Returns skopt's result."""
    names = problem.names

    def evaluate(points):
        rows = problem.evaluate([{n: plain(v) for n, v in zip(names, p)} for p in points])
        return [_objective(r["status"], r["val_accuracy"]) for r in rows]

    optimizer = gp_optimizer([d.skopt() for d in problem.dims], min(n_initial_points, n_calls), problem.seed)
    every = _every_point(problem.dims)
    if every is not None and len(every) <= n_calls:  # a space this small is searched whole
        return optimizer.tell(every, evaluate(every))
    with warnings.catch_warnings():
        # "The objective has been evaluated at this point before": answered from the store
        warnings.filterwarnings("ignore", message="The objective has been evaluated")
        return ask_tell(optimizer, evaluate, n_calls, problem.n_jobs)


def _every_point(dims):
    """All points of a finite space, or None."""
    values = [d.values() for d in dims]
    if any(v is None for v in values) or math.prod(len(v) for v in values) > 10**4:
        return None
    return [list(p) for p in itertools.product(*values)]


def _objective(status, val_accuracy):
    """1 - validation accuracy; a pruned trial's score so far (below the finished trials' median
    when it stopped: the GP learns its region is worse, as much as it has been seen to be, where
    1.0 would claim it never trains); 1.0 for a trial without a score."""
    if status in (OK, PRUNED) and math.isfinite(val_accuracy):
        return 1.0 - val_accuracy
    return 1.0


def add_cv_flag(parser):
    """--cv K, for the scikit-learn searches."""
    parser.add_argument("--cv", type=cli.number(int, 2, 100), default=None, metavar="K",
                        help="K-fold CV over train+validation instead of the validation split (range [2, 100])")


def check_cv_folds(args, train, validation):
    """--cv K needs K images of every class in train+validation, and each training fold needs
    two of every class, so that a tenth can be held out for early stopping."""
    if not args.cv:
        return
    fewest = int(np.bincount(np.concatenate([train.y, validation.y]), minlength=train.num_classes).min())
    if fewest < args.cv or fewest - math.ceil(fewest / args.cv) < 2:
        raise hparams.UsageError(f"--cv {args.cv}: the smallest class holds {fewest} images in train+validation; "
                                f"K-fold needs at least K and 2 left in each training fold (try a smaller --cv "
                                "or a larger --limit)")


def describe_cv(args):
    return {"scoring": f"{args.cv}-fold CV over train+validation, each fold's accuracy" if args.cv
            else BEST_EPOCH}
