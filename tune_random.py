"""Random search (scikit-learn's RandomizedSearchCV candidates), sampling scale-type hyperparameters log-uniformly.

    python tune_random.py --data-dir ../shared/beans --n-iter 20 --seed 0
    python tune_random.py --data-dir ../shared/beans --n-iter 12 --refine 2   # coarse to fine
    python tune_random.py --data-dir ../shared/beans --learning-rate 1e-5:1e-1 --beta-1 0.8:0.999

Learning rate, decay, epsilon and units are drawn log-uniformly; momentum and the betas through
1 - beta log-uniformly; layers uniformly; batch size over powers of two. With --refine K, after
each round every range is narrowed to the span of the round's best trials and searched again.
"""

import math
import sys

import cli
from common import UsageError
from tuning import halving, searches
from tuning.run import Method, Space, run
from tuning.space import DEFAULT_RANGES


def add_flags(parser):
    parser.add_argument("--n-iter", type=cli.number(int, 1, 10**4), default=8,
                        help="sampled configurations per round (default: 8, with the final model 20 minutes "
                             "at 64x64 on 2 cores)")
    parser.add_argument("--refine", type=cli.number(int, 0, 20), default=0, metavar="K",
                        help="coarse to fine: K more rounds, each over ranges narrowed to the previous "
                             "round's best trials (default: 0, range [0, 20])")
    parser.add_argument("--keep", type=cli.number(float, 0, 1, low_open=True), default=0.3,
                        help="fraction of a round's trials whose span sets the next ranges (default: 0.3, "
                             "range (0, 1])")
    searches.add_cv_flag(parser)
    halving.add_flags(parser)


def count(args, dims, base):
    """(trainings, trainings asked for): scikit-learn samples a space of lists only without
    replacement, at most its size. With --halving, --n-iter candidates start in rung 0."""
    candidates = args.n_iter
    if all(isinstance(d.scipy(), list) for d in dims):
        candidates = min(args.n_iter, math.prod(len(d.scipy()) for d in dims))
    if args.halving:
        return halving.trainings(candidates, args, base.epochs) * (args.cv or 1), None
    return candidates * (args.refine + 1) * (args.cv or 1), args.n_iter * (args.refine + 1) * (args.cv or 1)


def identity(args):
    return {"n_iter": args.n_iter, "refine": args.refine, "keep": args.keep, "cv": args.cv, **halving.identity(args)}


def search(problem, args):
    if args.halving:
        return halving.search(problem, searches.sample(problem.dims, args.n_iter, problem.seed), args,
                              problem.base.epochs)
    return searches.random_search(problem, args.n_iter, args.refine, args.keep)


def check(args, space, dims, base):
    halving.check(args, dims, base)
    if args.halving and args.refine:
        raise UsageError("--halving and --refine do not combine: halving already narrows the candidates")


METHOD = Method(
    script="tune_random", description=__doc__.splitlines()[0], allow_range=True,
    space=lambda args: Space(DEFAULT_RANGES), add_flags=add_flags, count=count, identity=identity,
    search=search, describe=searches.describe_cv, check=check, check_data=searches.check_cv_folds,
    cv=lambda args: args.cv, rung=halving.rung)


def main(argv=None):
    return cli.run_cli(lambda a: run(a, METHOD), argv, "tune_random.py")


if __name__ == "__main__":
    sys.exit(main())
