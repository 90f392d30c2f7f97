"""The three searches a user runs, each a `Method`: its flags and their checks, its default
space, how many trainings it will run, what identifies it on resume, and how it proposes
candidates (tuning.searches, tuning.halving). The driver (tuning.run) does the rest.

    Grid()      tune_grid.py    every combination (scikit-learn's ParameterGrid, GridSearchCV's)
    Random()    tune_random.py  sampled candidates (ParameterSampler, RandomizedSearchCV's)
    Bayes()     tune_bayes.py   GP + Expected Improvement (configured as skopt.gp_minimize)
"""

import json
import math
from pathlib import Path
from typing import NamedTuple

from .. import cli
from ..hparams import HPARAM_NAMES, UsageError
from . import halving, searches
from .space import DEFAULT_RANGES, SCALE_WORDS, TRIAL_DEFAULTS, Space

# Three hyperparameters x two values around the BN model's defaults: 8 trials of the searches'
# trial budget (TRIAL_DEFAULTS: 20 augmented epochs on a cosine schedule). Units stay at the BN
# model's default (64): they moved the score least in the random searches measured for the docs
# (docs/accuracy.md); tune_random.py and tune_bayes.py search them.
DEFAULT_GRID = {**TRIAL_DEFAULTS, "learning_rate": [1e-3, 3e-3], "layers": [3, 4], "batch_size": [16, 32]}


class Count(NamedTuple):
    trainings: int
    asked: int = None   # trainings asked for, where the space holds fewer
    epochs: int = 0     # at most: early stopping may cut them short

    @classmethod
    def of(cls, trainings, dims, base, asked=None):
        """Trainings of the fixed epochs each, or of the searched epochs' mean: a list's (each value
        trains equally often in a grid), a range's middle."""
        searched = next((d for d in dims if d.name == "epochs"), None)
        values = searched.values() if searched else None
        epochs = (base.epochs if searched is None else sum(values) / len(values) if values else searched.middle())
        return cls(trainings, asked, round(trainings * epochs))


def halving_count(candidates, args, base):
    folds = args.cv or 1
    return Count(halving.trainings(candidates, args, base.epochs) * folds, None,
                 halving.epochs(candidates, args, base.epochs) * folds)


class Method:
    """What a search method brings to the driver; `args` is the parsed command line. The
    defaults here suit a method without --cv or --halving."""

    script = description = None
    allow_range = True   # takes lo:hi ranges, not only lists
    scale_words = SCALE_WORDS  # how its --help and configuration name the distribution of each scale
    figures = ()         # names of the figures its search may draw, besides val_accuracy.png

    def space(self, args):
        """The default space before the user's flags (`args` None: for --help)."""
        return Space(DEFAULT_RANGES)

    def add_flags(self, parser):
        pass

    def check(self, args, space, dims, base):
        """Its flags against each other and the space: one UsageError line, before any work."""

    def check_data(self, args, train, validation):
        """Its flags against the data, once decoded."""

    def count(self, args, dims, base):
        """A Count: the trainings and epochs it will run, and the trainings asked for where the space
        holds fewer."""
        raise NotImplementedError

    def identity(self, args):
        """The settings that define the search besides its space (compared on resume)."""
        raise NotImplementedError

    def search(self, problem, args):
        """Proposes candidates to problem.evaluate; returns a searches.SearchOutput."""
        raise NotImplementedError

    def describe(self, args):
        return {"scoring": searches.BEST_EPOCH}

    def cv(self, args):
        """K folds of train + validation instead of the validation split, or None."""
        return getattr(args, "cv", None)

    def rung(self, args):
        """The hyperparameter a successive-halving rung sets, or None."""
        return halving.rung(args) if hasattr(args, "halving") else None


class Grid(Method):
    script, description, allow_range = "tune_grid", "Grid search (scikit-learn's ParameterGrid, as in GridSearchCV) " \
        "over the beans CNN's hyperparameters.", False

    def space(self, args):
        if args is not None and args.grid:
            grid = load_grid(args.grid)
            return Space({**TRIAL_DEFAULTS, **grid}, frozenset(grid))
        return Space(DEFAULT_GRID)

    def add_flags(self, parser):
        parser.add_argument("--grid", metavar="FILE", default=None,
                            help='JSON grid replacing the default one, e.g. {"units": [32, 64]}')
        searches.add_cv_flag(parser)
        parser.add_argument("--repeats", type=cli.number(int, 1, 100), default=1, metavar="R",
                            help="train each configuration R times (seeds SEED to SEED+R-1) and rank it by the "
                                 "mean (default: 1, range [1, 100]); the table shows the std, the figure the range")
        halving.add_flags(parser)

    def count(self, args, dims, base):
        candidates = math.prod(len(d.choices) for d in dims)
        if args.halving:
            return halving_count(candidates, args, base)
        return Count.of(candidates * (args.cv or 1) * args.repeats, dims, base)

    def check(self, args, space, dims, base):
        halving.check(args, dims, base)
        if args.repeats > 1 and (args.cv or args.halving):
            raise UsageError("--repeats goes without --cv and --halving (each repeat is scored on the validation split)")

    def check_data(self, args, train, validation):
        searches.check_cv_folds(args, train, validation)

    def describe(self, args):
        scoring = searches.describe_cv(args)
        if args.repeats > 1:
            scoring["scoring"] += (f", mean of {args.repeats} trainings "
                                   f"(seeds {args.seed}-{args.seed + args.repeats - 1})")
        return scoring

    def identity(self, args):
        return {"cv": args.cv, **halving.identity(args), "repeats": args.repeats}

    def search(self, problem, args):
        if args.halving:
            return halving.search(problem, searches.grid(problem.dims), args, problem.base.epochs)
        return searches.grid_search(problem, seeds=range(args.seed, args.seed + args.repeats)
                                    if args.repeats > 1 else ())


def load_grid(path):
    """tune_grid.py --grid FILE: a JSON object {hyperparameter: [values]}; anything else is one line."""
    path = Path(path)
    if path.is_dir():
        raise UsageError(f"--grid: {path} is a folder, not a JSON file")
    try:
        grid = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UsageError(f"--grid: file not found: {path}") from None
    except UnicodeDecodeError:
        raise UsageError(f"--grid: {path} is not UTF-8 text") from None
    except OSError as err:
        raise UsageError(f"--grid: cannot read {path} ({err.strerror or err})") from None
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


class Random(Method):
    script, description = "tune_random", ("Random search (scikit-learn's ParameterSampler, as in RandomizedSearchCV), "
                                          "sampling scale-type hyperparameters log-uniformly.")

    def add_flags(self, parser):
        parser.add_argument("--n-iter", type=cli.number(int, 1, 10**4), default=8,
                            help="sampled configurations per round (default: 8; the search prints its estimated time "
                                 "before it starts)")
        parser.add_argument("--refine", type=cli.number(int, 0, 20), default=0, metavar="K",
                            help="coarse to fine: K more rounds, each over ranges narrowed to the previous "
                                 "round's best trials (default: 0, range [0, 20])")
        parser.add_argument("--keep", type=cli.number(float, 0, 1, low_open=True), default=0.3,
                            help="fraction of a round's trials whose span sets the next ranges (default: 0.3, "
                                 "range (0, 1])")
        searches.add_cv_flag(parser)
        halving.add_flags(parser)

    def count(self, args, dims, base):
        """scikit-learn samples a space of lists only without replacement, at most its size.
        With --halving, --n-iter candidates start in rung 0."""
        candidates = args.n_iter
        if all(isinstance(d.scipy(), list) for d in dims):
            candidates = min(args.n_iter, math.prod(len(d.scipy()) for d in dims))
        if args.halving:
            return halving_count(candidates, args, base)
        return Count.of(candidates * (args.refine + 1) * (args.cv or 1), dims, base,
                        asked=args.n_iter * (args.refine + 1) * (args.cv or 1))

    def check(self, args, space, dims, base):
        halving.check(args, dims, base)
        if args.halving and args.refine:
            raise UsageError("--halving and --refine do not combine: halving already narrows the candidates")

    def check_data(self, args, train, validation):
        searches.check_cv_folds(args, train, validation)

    def describe(self, args):
        return searches.describe_cv(args)

    def identity(self, args):
        return {"n_iter": args.n_iter, "refine": args.refine, "keep": args.keep, "cv": args.cv,
                **halving.identity(args)}

    def search(self, problem, args):
        if args.halving:
            return halving.search(problem, searches.sample(problem.dims, args.n_iter, problem.seed), args,
                                  problem.base.epochs)
        return searches.random_search(problem, args.n_iter, args.refine, args.keep)


class Bayes(Method):
    script, description = "tune_bayes", ("Bayesian optimization (Gaussian process + Expected Improvement, as "
                                         "skopt.gp_minimize(acq_func='EI')).")
    figures = ("convergence.png", "objective.png")
    scale_words = {**SCALE_WORDS, "1-log": "uniform (skopt has no 1-x prior)"}  # space.Dim.skopt

    def add_flags(self, parser):
        parser.add_argument("--n-calls", type=cli.number(int, 1, 10**4), default=8,
                            help="points evaluated in all (default: 8; the search prints its estimated time before "
                                 "it starts)")
        parser.add_argument("--n-initial-points", type=cli.number(int, 1, 10**4), default=4,
                            help="random points before the GP takes over (default: 4)")

    def n_calls(self, args, dims):
        """--n-calls, or fewer where the space holds fewer distinct points (lists and integers)."""
        return min(args.n_calls, math.prod(len(d.values()) if d.values() is not None else math.inf for d in dims))

    def check(self, args, space, dims, base):
        if args.n_initial_points > args.n_calls:  # as gp_minimize refuses it: the GP would never propose
            raise UsageError(f"--n-initial-points {args.n_initial_points} is above --n-calls {args.n_calls}: "
                             "every point would be random")

    def count(self, args, dims, base):
        return Count.of(self.n_calls(args, dims), dims, base, asked=args.n_calls)

    def identity(self, args):
        return {"n_calls": args.n_calls, "n_initial_points": args.n_initial_points}

    def search(self, problem, args):
        result = searches.bayes_search(problem, self.n_calls(args, problem.dims), args.n_initial_points)
        figures = {"convergence.png": lambda: convergence_figure(result)}
        if result.models:  # the GP exists only once the initial random points are done
            figures["objective.png"] = lambda: objective_figure(result, problem.names)
        return searches.SearchOutput(figures)


def convergence_figure(result):
    import matplotlib

    matplotlib.use("Agg")
    from skopt.plots import plot_convergence

    return plot_convergence(result).figure


def objective_figure(result, names):
    """skopt's partial-dependence plots of the GP's last model."""
    import matplotlib

    matplotlib.use("Agg")
    import numpy as np
    from skopt.plots import plot_objective

    return np.ravel(plot_objective(result, dimensions=names))[0].figure
