"""scikit-learn's own GridSearchCV over the beans CNN: BeansClassifier is an estimator, the
validation split is the one fold (PredefinedSplit), and the refit best model reads the test split
once. tune_grid.py proposes the same candidates (ParameterGrid) through its own loop.

    python examples/grid_search_cv.py ../shared/beans        # 4 trainings of 10 epochs, then the refit
"""

import sys

import numpy as np
from sklearn.model_selection import GridSearchCV, PredefinedSplit

from beans_tune.images import Beans
from beans_tune.tuning.runner import BeansClassifier


def main(data_dir=None, image_size=64, epochs=10):
    beans = Beans(data_dir, image_size=image_size)
    x = np.concatenate([beans.train.x, beans.validation.x])
    y = np.concatenate([beans.train.y, beans.validation.y])
    fold = np.r_[np.full(len(beans.train), -1), np.zeros(len(beans.validation), int)]  # -1: never scored on
    grid = {"learning_rate": [1e-3, 3e-3], "layers": [2, 3]}
    search = GridSearchCV(BeansClassifier(batch_norm=True, epochs=epochs, seed=0), grid, cv=PredefinedSplit(fold))
    search.fit(x, y)  # refit=True: the best configuration trains again on train + validation
    for params, score in zip(search.cv_results_["params"], search.cv_results_["mean_test_score"]):
        print(f"{params}  validation accuracy {score:.4f}")
    print(f"best {search.best_params_}: test accuracy {search.score(beans.test.x, beans.test.y):.4f}")
    return search


if __name__ == "__main__":
    main(*sys.argv[1:2])
