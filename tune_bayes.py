"""Bayesian optimization (Gaussian process + Expected Improvement, as skopt.gp_minimize).

    python tune_bayes.py --data-dir ../shared/beans
    python tune_bayes.py --data-dir ../shared/beans --n-calls 30 --n-initial-points 8 --seed 0

Minimizes 1 - validation accuracy with acq_func="EI" (skopt's default would be "gp_hedge").
Learning rate, decay and units have log-uniform priors, batch size is a categorical of powers of
two. A trial without a score counts as accuracy 0 (a finite penalty: NaN would break the GP
fit). One ask/tell loop, configured as gp_minimize's: with --n-jobs N each step asks for N
points (constant liar) and trains them in parallel. A point proposed again is not retrained.
"""

import math
import sys

import cli
from tuning import searches
from tuning.run import Method, Space, run
from tuning.space import DEFAULT_RANGES


def add_flags(parser):
    parser.add_argument("--n-calls", type=cli.number(int, 1, 10**4), default=8,
                        help="points evaluated in all (default: 8, with the final model 24 minutes at "
                             "64x64 on 2 cores)")
    parser.add_argument("--n-initial-points", type=cli.number(int, 1, 10**4), default=4,
                        help="random points before the GP takes over (default: 4)")


def n_calls(args, dims):
    """--n-calls, or fewer where the space holds fewer distinct points (lists and integers)."""
    return min(args.n_calls, math.prod(len(d.values()) if d.values() is not None else math.inf for d in dims))


def search(problem, args):
    result = searches.bayes_search(problem, n_calls(args, problem.dims), args.n_initial_points)
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


METHOD = Method(
    script="tune_bayes", description=__doc__.splitlines()[0], allow_range=True,
    space=lambda args: Space(DEFAULT_RANGES), add_flags=add_flags,
    count=lambda args, dims, base: (n_calls(args, dims), args.n_calls),
    identity=lambda args: {"n_calls": args.n_calls, "n_initial_points": args.n_initial_points},
    search=search, figures=("convergence.png", "objective.png"))


def main(argv=None):
    return cli.run_cli(lambda a: run(a, METHOD), argv, "tune_bayes.py")


if __name__ == "__main__":
    sys.exit(main())
