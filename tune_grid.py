"""Grid search over the beans CNN's hyperparameters (scikit-learn's ParameterGrid, GridSearchCV's).

    python tune_grid.py --data-dir ../shared/beans
    python tune_grid.py --data-dir ../shared/beans --learning-rate 1e-3,1e-2 --layers 2,3
"""

import sys

from beans_tune.scripts import tune_grid as main

if __name__ == "__main__":
    sys.exit(main())
