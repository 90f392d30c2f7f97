"""The compiled model a training runs on, and the state that lets a training continue.

What a training pays before its first step (measured by bench/fixed_cost.py): TensorFlow traces
Keras's train and test steps into graphs and optimizes them on their first call. On this CPU
that costs more than an epoch of the beans CNN at 32x32. Two things here cut it:

- `compiled(hp, ...)` builds and compiles a model whose optimizer and metrics are built before
  `fit`, so that the train step is traced once (Keras builds them lazily inside the first trace,
  and TensorFlow traces a function again after a trace that created variables).
- With `reuse=True` it keeps the last few compiled models, keyed by everything their graphs
  depend on (`graph_key`): the architecture (its number of classes too), the optimizer's
  constants and the kind of learning-rate schedule. A later training with the same key gets
  that model back with fresh weights (those a fresh build with the same seed has), a zeroed
  optimizer and its own learning rate, decay and batch size, and no tracing. The learning-rate
  schedules read their parameters from variables so that one graph serves every learning rate
  and decay; they compute the same float32 values as Keras's own schedules.

`State` is a training's state at the end of an epoch (weights, optimizer variables, its curves
and its early stopping's memory): successive halving continues a promoted training from it.
"""

import collections
import contextlib
import io
import json
import random
import threading
from dataclasses import dataclass

import common  # before keras: it sets TensorFlow's log level
import keras  # noqa: E402 - after common set TensorFlow's log level
import numpy as np

KEEP = 4  # compiled models kept for reuse: a grid's candidates share a few architectures


def schedule_kind(hp):
    return common.schedule_parameters(hp, steps_per_epoch=1)[0]


def graph_key(hp, image_size, num_classes, eager):
    """What a compiled model's traced graphs depend on; trainings with equal keys share them."""
    optimizer = (hp.beta_1, hp.beta_2, hp.epsilon) if hp.optimizer == "adam" else (hp.momentum,)
    return (image_size, num_classes, hp.layers, hp.units, hp.batch_norm,
            hp.bn_momentum if hp.batch_norm else None, hp.optimizer, optimizer, schedule_kind(hp), eager)


class _Schedule:
    """The Keras schedule common.schedule_parameters states for `kind`, with its numbers (rate,
    decay steps, decay rate) in variables: `set(...)` gives a reused graph another learning rate,
    decay or length."""

    def __init__(self, kind, arguments):
        self.kind = kind
        self.types = {name: type(value) for name, value in arguments.items() if not isinstance(value, bool)}
        self.variables = {name: keras.Variable(1.0, dtype="float32", trainable=False, name=name)
                          for name in self.types}
        flags = {name: value for name, value in arguments.items() if name not in self.types}
        schedule_class = getattr(keras.optimizers.schedules, common.SCHEDULE_CLASSES[kind])
        self.schedule = schedule_class(**self.variables, **flags)
        # a saved model (model.keras) holds Keras's own schedule with this training's numbers, so
        # that keras.models.load_model reads it without this module
        self._keras_config = self.schedule.get_config
        self.schedule.get_config = self.config

    def config(self):
        numbers = {name: int(round(float(self.variables[name].numpy()))) if kind is int
                   else float(self.variables[name].numpy()) for name, kind in self.types.items()}
        return {**self._keras_config(), **numbers}

    def set(self, hp, steps_per_epoch, horizon):
        kind, arguments = common.schedule_parameters(hp, steps_per_epoch, horizon)
        assert kind == self.kind, (kind, self.kind)
        for name in self.types:
            self.variables[name].assign(arguments[name])


def _make_optimizer(hp, schedule):
    if schedule is None:  # a constant rate: Keras keeps it in a variable of its own
        return common.OPTIMIZERS[hp.optimizer](hp, float(hp.learning_rate))
    return common.OPTIMIZERS[hp.optimizer](hp, schedule.schedule)


@dataclass
class _Compiled:
    model: object
    schedule: object  # _Schedule, or None for a constant rate

    def prepare(self, hp, steps_per_epoch, horizon):
        """Zeroes the optimizer (its step count too) and sets this training's rate and schedule."""
        optimizer = self.model.optimizer
        for variable in optimizer.variables:
            variable.assign(np.zeros(variable.shape, variable.dtype))
        if self.schedule is None:
            optimizer.learning_rate = float(hp.learning_rate)
        else:
            self.schedule.set(hp, steps_per_epoch, horizon)


_KEPT = threading.local()  # per thread: two trainings at once (threads of a Dask worker) never share a model


def _cache():
    if not hasattr(_KEPT, "models"):
        _KEPT.models = collections.OrderedDict()
    return _KEPT.models


def compiled(hp, image_size, num_classes, steps_per_epoch, horizon, sample, eager=False, reuse=False):
    """A compiled model for `hp` over `num_classes` classes with the weights a fresh build has
    under the current seed (keras.utils.set_random_seed before the call), its schedule over
    `horizon` epochs.

    `sample` is one batch (x, y) to build the optimizer and metrics on. With `reuse` the model
    may be one an earlier call returned, re-initialized: a caller that keeps a model past the
    next training must not ask for reuse."""
    fresh = common.build_model(hp, image_size, num_classes=num_classes)
    key, kept = graph_key(hp, image_size, num_classes, eager), _cache()
    entry = kept.get(key) if reuse else None
    if entry is None:
        kind, arguments = common.schedule_parameters(hp, steps_per_epoch, horizon)
        entry = _Compiled(fresh, None if kind == "constant" else _Schedule(kind, arguments))
        fresh.compile(optimizer=_make_optimizer(hp, entry.schedule), loss="sparse_categorical_crossentropy",
                      metrics=["accuracy"], run_eagerly=eager)
        _build_state(fresh, sample)
        if reuse:
            kept[key] = entry
            while len(kept) > KEEP:
                kept.popitem(last=False)
    else:
        kept.move_to_end(key)
        entry.model.set_weights(fresh.get_weights())
    entry.prepare(hp, steps_per_epoch, horizon)
    return entry.model


def seed(value, reuse=False):
    """Seeds Python, NumPy, Keras and TensorFlow with `value`, as keras.utils.set_random_seed
    does, except that with `reuse`, where TensorFlow's global seed is already `value`,
    TensorFlow's is not set again: setting it clears TensorFlow's kernel cache, and with it the
    kept models' instantiated train and test functions, which then cost 0.3-0.6 s to
    instantiate again on their first call (bench/fixed_cost.py). A search's trials share its
    --seed, so after its first trial TensorFlow's seed is already theirs (with --repeats the
    seeds alternate, and it is set every time).

    Leaving it is safe because what a training reads of TensorFlow's global state is that seed
    alone, and it already has the value setting it would give: the shuffle combines it with its
    own seed; nothing draws on TensorFlow's operation-seed counter or keeps a stateful random
    kernel (the augmenter has its own seed generators, Keras's random ops are stateless).
    tests/test_graphs.py checks that reused trainings equal fresh ones. Where this Keras or
    TensorFlow lacks the internals read here, every seed is set as before."""
    try:  # Keras's and TensorFlow's internals: where one is missing, every seed is set as before
        from keras.src.backend.common import global_state
        from keras.src.random.seed_generator import GLOBAL_SEED_GENERATOR
        from keras.src.utils.rng_utils import GLOBAL_RANDOM_SEED
        from tensorflow.python.eager import context

        tensorflows = context.context()._seed
    except (ImportError, AttributeError):
        reuse = False
    # keras.utils.set_random_seed refuses a seed that is not an int: so does the kept path
    if not (reuse and isinstance(value, int) and tensorflows == value):
        keras.utils.set_random_seed(value)
        return
    random.seed(value)
    np.random.seed(value)
    global_state.set_global_attribute(GLOBAL_RANDOM_SEED, value)
    global_state.set_global_attribute(GLOBAL_SEED_GENERATOR, None)  # a new global seed generator, from `value`


class _ThreadsStream:
    """Python's `random` as Keras sees it where it draws the seeds of initializers and seed
    generators made without one (keras.src.random.seed_generator.make_default_seed): inside
    `python_random(...)` the calling thread's own stream, else the process's global one."""

    def __getattr__(self, name):
        stream = getattr(_KEPT, "python_random", None)
        return getattr(random if stream is None else stream, name)


@contextlib.contextmanager
def python_random(value):
    """Within: Keras draws its default seeds (a new model's initializers) from a Python random
    stream of this thread's own, seeded with `value`: the numbers random.seed(value) gives, but
    no other thread draws from it. Keras otherwise draws them from Python's global `random`,
    which every thread of the process shares: on a Dask worker, Dask's own threads draw from it
    too, at moments that vary, and a search's first trial started from other weights in 2 of 3
    runs (docs/accuracy.md, Reproducibility)."""
    try:
        from keras.src.random import seed_generator
    except ImportError:
        seed_generator = None
    current = getattr(seed_generator, "python_random", None)
    if current is random:
        seed_generator.python_random = current = _ThreadsStream()
    if not isinstance(current, _ThreadsStream) or not isinstance(value, int):
        yield  # a Keras that draws its default seeds elsewhere, or no seed: as before
        return
    previous = getattr(_KEPT, "python_random", None)
    _KEPT.python_random = random.Random(value)
    try:
        yield
    finally:
        _KEPT.python_random = previous


def _build_state(model, sample):
    """Creates the optimizer's and the metrics' variables now, not inside the first trace of
    the train step (which TensorFlow would then trace a second time)."""
    build = getattr(model, "_symbolic_build", None)  # Keras's own pre-build (keras/src/trainers)
    if build is not None:
        build(data_batch=sample)
    if not model.optimizer.built:
        model.optimizer.build(model.trainable_variables)


def clear():
    """Forgets every model this thread kept."""
    _cache().clear()


# --------------------------------------------------------------------------------------
# A training's state, to continue it
# --------------------------------------------------------------------------------------


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
    augmenter: list = None         # the augmenter's random state (its seed generators'), with augmentation

    def to_bytes(self):
        arrays = {f"w{i}": a for i, a in enumerate(self.weights)}
        arrays |= {f"o{i}": a for i, a in enumerate(self.optimizer)}
        arrays |= {f"b{i}": a for i, a in enumerate(self.best_weights or [])}
        arrays |= {f"a{i}": a for i, a in enumerate(self.augmenter or [])}
        info = {"epochs": self.epochs, "history": self.history, "best": self.best, "best_epoch": self.best_epoch,
                "wait": self.wait, "stopped": self.stopped,
                "counts": [len(self.weights), len(self.optimizer), len(self.best_weights or []),
                           len(self.augmenter or [])]}
        buffer = io.BytesIO()
        np.savez(buffer, info=np.frombuffer(json.dumps(info).encode(), np.uint8), **arrays)
        return buffer.getvalue()

    @classmethod
    def from_bytes(cls, data):
        with np.load(io.BytesIO(data)) as arrays:
            info = json.loads(arrays["info"].tobytes().decode())
            weights, optimizer, best, augmenter = info.pop("counts")
            return cls(weights=[arrays[f"w{i}"] for i in range(weights)],
                       optimizer=[arrays[f"o{i}"] for i in range(optimizer)],
                       best_weights=[arrays[f"b{i}"] for i in range(best)] or None,
                       augmenter=[arrays[f"a{i}"] for i in range(augmenter)] or None, **info)


def restore(model, state):
    """Puts `state`'s weights and optimizer variables (its step count too) into `model`."""
    model.set_weights(state.weights)
    variables = model.optimizer.variables
    if len(variables) != len(state.optimizer):
        raise ValueError(f"the saved state holds {len(state.optimizer)} optimizer variables, "
                         f"the model's optimizer {len(variables)}")
    for variable, value in zip(variables, state.optimizer):
        variable.assign(value)


def restore_augmenter(augmenter, state):
    """Sets the augmenter's random state to where `state`'s training left it."""
    if state.augmenter:
        for variable, value in zip(augmenter.variables, state.augmenter):
            variable.assign(value)


# Iterators Keras's fit (3.15, TensorFlow backend) makes of the training dataset per epoch. Each
# new iterator of a seeded, reshuffling dataset draws the next order; tests/test_graphs.py checks
# that a continued training equals an uninterrupted one, which fails if another Keras draws more.
ITERATORS_PER_EPOCH = 2


def advance(dataset, epochs):
    """Moves a seeded, reshuffling dataset on by `epochs` epochs of fit without reading it, so
    that a continued training sees the batches one uninterrupted training would have seen."""
    for _ in range(ITERATORS_PER_EPOCH * epochs):
        iter(dataset)
    return dataset


@dataclass(frozen=True)
class Plan:
    """How common.train runs beyond its hyperparameters."""

    reuse: bool = False     # a compiled model of an earlier training may serve (see `compiled`)
    start: State = None     # continue this State up to hp.epochs
    horizon: int = None     # epochs the learning-rate schedule spans (None: hp.epochs)
    keep: bool = False      # return the training's State at its end


class Snapshot(keras.callbacks.Callback):
    """Keeps the weights, optimizer variables and the augmenter's random state as training
    ends. Put it before EarlyStopping, whose on_train_end puts the best epoch's weights back."""

    weights = optimizer = None

    def __init__(self, augmenter=None):
        super().__init__()
        self.augmenter = augmenter

    def on_train_end(self, logs=None):
        self.weights = self.model.get_weights()
        self.optimizer = [np.array(v) for v in self.model.optimizer.variables]
        self.random = None if self.augmenter is None else [np.array(v) for v in self.augmenter.variables]

    def state(self, history, stopper):
        return State(epochs=len(history.get("loss", [])), weights=self.weights, optimizer=self.optimizer,
                     history=history,
                     best=None if stopper is None or stopper.best is None else float(stopper.best),
                     best_epoch=0 if stopper is None else int(stopper.best_epoch),
                     wait=0 if stopper is None else int(stopper.wait),
                     best_weights=None if stopper is None else stopper.best_weights,
                     stopped=bool(stopper is not None and stopper.stopped_epoch > 0), augmenter=self.random)


class EarlyStopping(keras.callbacks.EarlyStopping):
    """Keras's EarlyStopping, continuing from a State's memory (best score, its epoch and
    weights, epochs waited) instead of starting blank."""

    def __init__(self, start=None, **kwargs):
        super().__init__(**kwargs)
        self.start = start

    def on_train_begin(self, logs=None):
        super().on_train_begin(logs)
        if self.start is not None and self.start.best is not None:
            self.best, self.best_epoch, self.wait = self.start.best, self.start.best_epoch, self.start.wait
            self.best_weights = self.start.best_weights
