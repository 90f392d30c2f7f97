"""Bayesian optimization: a Gaussian process with Expected Improvement, as skopt.gp_minimize.

    python tune_bayes.py --data-dir ../shared/beans --n-calls 12
"""

import sys

from beans_tune.scripts import tune_bayes as main

if __name__ == "__main__":
    sys.exit(main())
