"""skopt's own gp_minimize, Expected Improvement: a Gaussian process models 1 - validation accuracy over the
lecture's five hyperparameters; the best point trains again and reads the test split once (tune_bayes.py: its
own loop).   python examples/gp_minimize.py ../shared/beans    # 8 trainings of 10 epochs, then the final one"""

import sys

import numpy as np
from skopt import gp_minimize
from skopt.space import Categorical, Integer, Real

from beans_tune.hparams import HParams
from beans_tune.images import Beans
from beans_tune.training import evaluate, train

SPACE = [Real(1e-4, 1e-2, prior="log-uniform", name="learning_rate"), Integer(2, 4, name="layers"),
         Integer(32, 256, prior="log-uniform", name="units"), Real(1e-3, 1e-1, prior="log-uniform", name="decay"),
         Categorical([16, 32, 64], name="batch_size")]


def main(data_dir=None, image_size=64, epochs=10, n_calls=8):
    beans, names = Beans(data_dir, image_size=image_size), [d.name for d in SPACE]

    def hparams(point):  # skopt's numpy numbers as Python ones
        return HParams(batch_norm=True, epochs=epochs, **{n: np.asarray(v).item() for n, v in zip(names, point)})

    def objective(point):
        return 1 - train(hparams(point), beans.train, beans.validation, seed=0, log=None).val_accuracy

    result = gp_minimize(objective, SPACE, acq_func="EI", n_calls=n_calls, n_initial_points=4, random_state=0)
    shown = lambda point: " ".join(f"{n}={v:.4g}" for n, v in zip(names, point))  # noqa: E731
    for point, value in zip(result.x_iters, result.func_vals):
        print(f"{shown(point)}  validation accuracy {1 - value:.4f}")
    final = train(hparams(result.x), beans.train, beans.validation, seed=0, log=None)
    print(f"best {shown(result.x)}: test accuracy {evaluate(final.model, beans.test):.4f}")
    return result


if __name__ == "__main__":
    main(*sys.argv[1:2])
