"""Bayesian optimization (skopt.gp_minimize, Gaussian process + Expected Improvement).

    python tune_bayes.py --data-dir ../shared/beans
    python tune_bayes.py --data-dir ../shared/beans --n-calls 30 --n-initial-points 8 --seed 0

Minimizes 1 - validation accuracy with acq_func="EI" (skopt's default would be "gp_hedge").
Learning rate, decay and units have log-uniform priors, batch size is a categorical of powers of
two. A failed trial scores accuracy 0 (a finite penalty: NaN would break the GP fit). With
--n-jobs N, each step asks the same GP/EI optimizer for N points (constant liar) and trains them
in parallel.
"""

import sys

import common
import tuning


def add_flags(parser):
    parser.add_argument("--n-calls", type=int, default=15,
                        help="trainings in all (default: 15, ~9 minutes at 64x64)")
    parser.add_argument("--n-initial-points", type=int, default=5,
                        help="random points before the GP takes over (default: 5)")


def count(args, dims):
    if args.n_calls < 1:
        raise common.UsageError(f"--n-calls must be >= 1, got {args.n_calls}")
    if args.n_initial_points < 1:
        raise common.UsageError(f"--n-initial-points must be >= 1, got {args.n_initial_points}")
    return args.n_calls


METHOD = tuning.Method(
    script="tune_bayes", description=__doc__.splitlines()[0], default_space=tuning.DEFAULT_RANGES,
    allow_range=True, add_flags=add_flags, count=count, search=tuning.bayes_search, sklearn=False)


def main(argv=None):
    return common.run_cli(lambda a: tuning.run(a, METHOD), argv, "tune_bayes.py")


if __name__ == "__main__":
    sys.exit(main())
