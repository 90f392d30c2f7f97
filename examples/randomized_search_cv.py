"""scikit-learn's own RandomizedSearchCV over the lecture's five hyperparameters: learning rate and
decay drawn log-uniformly (scipy's loguniform), layers uniformly, units and batch size from lists;
the validation split as the one fold, the test split read once by the refit best model.

    python examples/randomized_search_cv.py ../shared/beans    # 4 trainings of 10 epochs, then the refit
"""

import sys

import numpy as np
from scipy.stats import loguniform, randint
from sklearn.model_selection import PredefinedSplit, RandomizedSearchCV

from beans_tune.images import Beans
from beans_tune.tuning.runner import BeansClassifier


def main(data_dir=None, image_size=64, epochs=10, n_iter=4):
    beans = Beans(data_dir, image_size=image_size)
    x = np.concatenate([beans.train.x, beans.validation.x])
    y = np.concatenate([beans.train.y, beans.validation.y])
    fold = np.r_[np.full(len(beans.train), -1), np.zeros(len(beans.validation), int)]  # -1: never scored on
    space = {"learning_rate": loguniform(1e-4, 1e-2), "layers": randint(2, 5), "units": [32, 64, 128],
             "decay": loguniform(1e-3, 1e-1), "batch_size": [16, 32, 64]}  # decay: alpha / (1 + decay * epoch)
    search = RandomizedSearchCV(BeansClassifier(batch_norm=True, epochs=epochs, seed=0), space, n_iter=n_iter,
                                cv=PredefinedSplit(fold), random_state=0)
    search.fit(x, y)
    for params, score in zip(search.cv_results_["params"], search.cv_results_["mean_test_score"]):
        print(" ".join(f"{k}={v:.4g}" for k, v in params.items()), f" validation accuracy {score:.4f}")
    best = " ".join(f"{k}={v:.4g}" for k, v in search.best_params_.items())
    print(f"best {best}: test accuracy {search.score(beans.test.x, beans.test.y):.4f}")
    return search


if __name__ == "__main__":
    main(*sys.argv[1:2])
