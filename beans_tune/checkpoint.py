"""A training's state at the end of an epoch, to continue it later: successive halving continues a
promoted training from the State its rung kept. Public Keras only: the model's weights, the
optimizer's variables, `fit(initial_epoch=...)`, and an early stopping of our own whose memory
(best score, its epoch and weights, epochs waited) is plain data.

A continued training starts from its checkpoint; it is not bit-identical to one that never
stopped: its batches are shuffled (and augmented) from a seed of its own (common.train)."""

import io
import json
import math
from dataclasses import dataclass

import numpy as np


@dataclass
class State:
    """A training after `epochs` epochs: what continuing it needs."""

    epochs: int
    weights: list                  # model.get_weights(): BN's moving statistics included
    optimizer: list                # optimizer.variables' values: the step count included
    history: dict                  # per-epoch curves so far (common.TrainResult.history)
    best: float = None             # early stopping's memory: best val_accuracy so far,
    best_epoch: int = 0            # its epoch (0-based),
    wait: int = 0                  # epochs since it,
    best_weights: list = None      # and its weights
    stopped: bool = False          # early stopping ended the training

    def to_bytes(self):
        arrays = {f"w{i}": a for i, a in enumerate(self.weights)}
        arrays |= {f"o{i}": a for i, a in enumerate(self.optimizer)}
        arrays |= {f"b{i}": a for i, a in enumerate(self.best_weights or [])}
        info = {"epochs": self.epochs, "history": self.history, "best": self.best, "best_epoch": self.best_epoch,
                "wait": self.wait, "stopped": self.stopped,
                "counts": [len(self.weights), len(self.optimizer), len(self.best_weights or [])]}
        buffer = io.BytesIO()
        np.savez(buffer, info=np.frombuffer(json.dumps(info).encode(), np.uint8), **arrays)
        return buffer.getvalue()

    @classmethod
    def from_bytes(cls, data):
        with np.load(io.BytesIO(data)) as arrays:
            info = json.loads(arrays["info"].tobytes().decode())
            weights, optimizer, best = info.pop("counts")
            return cls(weights=[arrays[f"w{i}"] for i in range(weights)],
                       optimizer=[arrays[f"o{i}"] for i in range(optimizer)],
                       best_weights=[arrays[f"b{i}"] for i in range(best)] or None, **info)


@dataclass(frozen=True)
class Plan:
    """How common.train runs beyond its hyperparameters."""

    start: State = None     # continue this State up to hp.epochs
    horizon: int = None     # epochs the learning-rate schedule spans (None: hp.epochs)
    keep: bool = False      # return the training's State at its end
    timeout: float = None   # seconds: stop at the first batch past it (status "timeout")
    prune: object = None    # tuning.pruning.Bar: stop at the end of an epoch below it (status "pruned")


def restore(model, state):
    """Puts `state`'s weights and optimizer variables (its step count too) into `model`, whose
    optimizer is built here if it is not yet."""
    model.set_weights(state.weights)
    if not model.optimizer.built:
        model.optimizer.build(model.trainable_variables)
    variables = model.optimizer.variables
    if len(variables) != len(state.optimizer):
        raise ValueError(f"the saved state holds {len(state.optimizer)} optimizer variables, "
                         f"the model's optimizer {len(variables)}")
    for variable, value in zip(variables, state.optimizer):
        variable.assign(value)


class EarlyStop:
    """Stops a training of `model` `patience` epochs after its best validation accuracy (a tie is
    no improvement; NaN never is) and, with `restore`, puts the best epoch's weights back at the
    end; its memory starts from a State's when it continues one. Keras's EarlyStopping rule, with
    the memory in plain attributes that a State carries. Keras calls it through a LambdaCallback
    (training.as_callback)."""

    def __init__(self, model, patience, restore=True, start=None):
        self.model, self.patience, self.restore = model, patience, restore
        self.best = None if start is None else start.best
        self.best_epoch = 0 if start is None else start.best_epoch
        self.wait = 0 if start is None else start.wait
        self.best_weights = None if start is None else start.best_weights
        self.stopped = False

    def on_epoch_end(self, epoch, logs=None):
        current = (logs or {}).get("val_accuracy")
        if current is None:
            return
        self.wait += 1
        if math.isfinite(current) and (self.best is None or current > self.best):
            self.best, self.best_epoch, self.wait = float(current), epoch, 0
            if self.restore:
                self.best_weights = self.model.get_weights()
            return
        if self.wait >= self.patience and epoch > 0:
            self.stopped = True
            self.model.stop_training = True

    def on_train_end(self, logs=None):
        if self.restore and self.best_weights is not None:
            self.model.set_weights(self.best_weights)


class Snapshot:
    """Keeps `model`'s weights and optimizer variables as training ends. Put it before EarlyStop,
    whose on_train_end puts the best epoch's weights back."""

    def __init__(self, model):
        self.model, self.weights, self.optimizer = model, None, None

    def on_train_end(self, logs=None):
        self.weights = self.model.get_weights()
        self.optimizer = [np.array(v) for v in self.model.optimizer.variables]

    def state(self, history, stopper):
        return State(epochs=len(history.get("loss", [])), weights=self.weights, optimizer=self.optimizer,
                     history=history, best=None if stopper is None else stopper.best,
                     best_epoch=0 if stopper is None else stopper.best_epoch,
                     wait=0 if stopper is None else stopper.wait,
                     best_weights=None if stopper is None else stopper.best_weights,
                     stopped=bool(stopper is not None and stopper.stopped))
