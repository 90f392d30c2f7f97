"""Grid search (scikit-learn GridSearchCV) over the beans CNN's hyperparameters.

    python tune_grid.py --data-dir ../shared/beans
    python tune_grid.py --data-dir ../shared/beans --learning-rate 1e-3,1e-2 --layers 2,3 --batch-size 32,64
    python tune_grid.py --data-dir ../shared/beans --grid grid.json   # {"units": [32, 64], ...}

Every combination is trained on the train split and scored on the validation split; the best
is retrained and evaluated once on the test split.
"""

import math
import sys

import common
import tuning


def add_flags(parser):
    parser.add_argument("--grid", metavar="FILE", default=None,
                        help='JSON grid replacing the default one, e.g. {"units": [32, 64]}')


def count(args, dims):
    return math.prod(len(d.choices) for d in dims) * (args.cv or 1)


def search(ctx):
    from sklearn.model_selection import GridSearchCV

    grid = {d.name: list(d.choices) for d in ctx.dims}
    return tuning.sklearn_search(ctx, GridSearchCV, "param_grid", grid)


METHOD = tuning.Method(
    script="tune_grid", description=__doc__.splitlines()[0], default_space=tuning.DEFAULT_GRID,
    allow_range=False, add_flags=add_flags, count=count, search=search)


def main(argv=None):
    return common.run_cli(lambda a: tuning.run(a, METHOD), argv, "tune_grid.py")


if __name__ == "__main__":
    sys.exit(main())
