"""Grid search (scikit-learn's GridSearchCV candidates) over the beans CNN's hyperparameters.

    python tune_grid.py --data-dir ../shared/beans
    python tune_grid.py --data-dir ../shared/beans --learning-rate 1e-3,1e-2 --layers 2,3 --batch-size 32,64
    python tune_grid.py --data-dir ../shared/beans --grid grid.json   # {"units": [32, 64], ...}

Every combination, in the order of scikit-learn's ParameterGrid (GridSearchCV's), is trained on
the train split and scored on the validation split; the best is retrained (by default on train + validation, tuning.final) and evaluated once on the test
split.
"""

import json
import math
import sys
from pathlib import Path

import cli
from common import HPARAM_NAMES, UsageError
from tuning import halving, searches
from tuning.run import Method, Space, run
from tuning.space import TRIAL_DEFAULTS

# Three hyperparameters x two values around the BN model's defaults: 8 trials of the searches'
# trial budget (tuning.space.TRIAL_DEFAULTS: 20 augmented epochs on a cosine schedule). Units
# stay at the BN model's default (64): they moved the score least in the random searches
# measured for the docs (docs/accuracy.md); tune_random.py and tune_bayes.py search them.
DEFAULT_GRID = {
    **TRIAL_DEFAULTS,
    "learning_rate": [1e-3, 3e-3],
    "layers": [3, 4],
    "batch_size": [16, 32],
}


def add_flags(parser):
    parser.add_argument("--grid", metavar="FILE", default=None,
                        help='JSON grid replacing the default one, e.g. {"units": [32, 64]}')
    searches.add_cv_flag(parser)
    parser.add_argument("--repeats", type=cli.number(int, 1, 100), default=1, metavar="R",
                        help="train each configuration R times (seeds SEED to SEED+R-1) and rank it by the mean "
                             "(default: 1, range [1, 100]); the table shows the std, the figure the range")
    halving.add_flags(parser)


def space(args):
    if args is not None and args.grid:
        grid = load_grid(args.grid)
        return Space({**TRIAL_DEFAULTS, **grid}, frozenset(grid))
    return Space(DEFAULT_GRID)


def load_grid(path):
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


def count(args, dims, base):
    candidates = math.prod(len(d.choices) for d in dims)
    if args.halving:
        return halving.trainings(candidates, args, base.epochs) * (args.cv or 1), None
    return candidates * (args.cv or 1) * args.repeats, None


def check(args, space, dims, base):
    halving.check(args, dims, base)
    if args.repeats > 1 and (args.cv or args.halving):
        raise UsageError("--repeats goes without --cv and --halving (each repeat is scored on the validation split)")


def describe(args):
    scoring = searches.describe_cv(args)
    if args.repeats > 1:
        scoring["scoring"] += f", mean of {args.repeats} trainings (seeds {args.seed}-{args.seed + args.repeats - 1})"
    return scoring


def identity(args):
    """What identifies a grid search besides its space (resume)."""
    return {"cv": args.cv, **halving.identity(args), "repeats": args.repeats}


def search(problem, args):
    if args.halving:
        return halving.search(problem, searches.grid(problem.dims), args, problem.base.epochs)
    return searches.grid_search(problem, seeds=range(args.seed, args.seed + args.repeats) if args.repeats > 1 else ())


METHOD = Method(
    script="tune_grid", description=__doc__.splitlines()[0], allow_range=False, space=space,
    add_flags=add_flags, count=count, identity=identity, search=search, describe=describe,
    check=check, check_data=searches.check_cv_folds, cv=lambda args: args.cv, rung=halving.rung)


def main(argv=None):
    return cli.run_cli(lambda a: run(a, METHOD), argv, "tune_grid.py")


if __name__ == "__main__":
    sys.exit(main())
