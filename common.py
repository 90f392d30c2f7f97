"""The lecture's core in one import: the hyperparameters, the beans data, the CNN with optional
BatchNormalization, `train` and `evaluate`. Each lives in the beans_tune package; this module only
names them for a script or a notebook of your own:

    from common import Beans, HParams, evaluate, train
    beans = Beans("../shared/beans")
    result = train(HParams(batch_norm=True), beans.train, beans.validation)
    print(result.val_accuracy, evaluate(result.model, beans.validation))
"""

from beans_tune.cnn import build_model  # noqa: F401
from beans_tune.hparams import HParams, UsageError  # noqa: F401
from beans_tune.images import Beans, Split  # noqa: F401
from beans_tune.training import evaluate, train  # noqa: F401
