"""Random search (scikit-learn's ParameterSampler, RandomizedSearchCV's), scale-type values log-uniform.

    python tune_random.py --data-dir ../shared/beans --n-iter 20
    python tune_random.py --data-dir ../shared/beans --n-iter 12 --refine 2   # coarse to fine
"""

import sys

from beans_tune.scripts import tune_random as main

if __name__ == "__main__":
    sys.exit(main())
