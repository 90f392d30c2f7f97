"""How long a search will take, said before it trains: its trainings and epochs, and an epoch's
seconds measured here, on this machine and this data, by a short training of the space's middle
configuration on half of each split.

    estimate(setup.dims, setup.base, train, validation, trainings=8, epochs=160, final_epochs=60)
"""

import dataclasses
import time

from .. import outputs, training
from .report import duration
from .space import fmt

SAMPLE = 2        # the timed training sees every 2nd image of each split
TIMED_EPOCHS = 2  # the first traces the model's functions; the second times an epoch


@dataclasses.dataclass(frozen=True)
class Estimate:
    middle: dict          # the timed configuration's searched values
    start_seconds: float  # a training's start: building, compiling, tracing
    epoch_seconds: float  # one epoch over the whole train split, with its validation
    trainings: int
    epochs: int
    final_epochs: int

    @property
    def seconds(self):
        return (self.trainings + 1) * self.start_seconds + (self.epochs + self.final_epochs) * self.epoch_seconds

    def describe(self):
        shown = " ".join(f"{name}={fmt(value)}" for name, value in self.middle.items())
        return (f"{self.trainings} trainings of {outputs.epoch_count(self.epochs)} in all, then the final model's "
                f"{self.final_epochs}: about {duration(self.seconds)} on this machine, from an epoch of the "
                f"space's middle ({shown}), {self.epoch_seconds:.1f}s here, and a training's start, "
                f"{self.start_seconds:.1f}s (smaller batches, more layers or units take longer; early stopping "
                f"ends trainings sooner)")


def every_nth(split, n):
    return dataclasses.replace(split, x=split.x[::n], y=split.y[::n], files=split.files[::n])


def estimate(dims, base, train, validation, trainings, epochs, final_epochs, seed=0):
    """Times TIMED_EPOCHS epochs of the middle configuration on 1/SAMPLE of each split; None where
    fewer ran."""
    middle = {d.name: d.middle() for d in dims}
    hp = dataclasses.replace(base, **{**middle, "epochs": TIMED_EPOCHS, "patience": TIMED_EPOCHS})
    import keras

    ends = []
    clock = keras.callbacks.LambdaCallback(on_epoch_end=lambda epoch, logs: ends.append(time.perf_counter()))
    begin = time.perf_counter()
    training.train(hp, every_nth(train, SAMPLE), every_nth(validation, SAMPLE), seed=seed, log=None,
                   callbacks=[clock])
    if len(ends) < TIMED_EPOCHS:  # it diverged in its first epoch: no epoch to time
        return None
    epoch = (ends[-1] - ends[0]) / (len(ends) - 1)
    start = ends[0] - begin - epoch  # the first epoch's extra time is the tracing
    return Estimate(middle, start, epoch * SAMPLE, trainings, epochs, final_epochs)
