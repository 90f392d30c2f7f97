"""Training: `train(hp, train_split, val_split)` fits the CNN (cnn.py) on in-memory images
through tf.data, early-stops on validation accuracy and keeps the best epoch's weights;
`evaluate(model, split)` is its accuracy. Continuing a saved training (successive halving) goes
through checkpoint.py's public-Keras state.
"""

import math
import os
import time
from dataclasses import dataclass

import numpy as np

from . import checkpoint, cnn

# "1": Keras runs each step eagerly instead of tracing it into a graph first (Keras's default).
# Tracing costs seconds per training whatever its size: the test suite, which trains hundreds of
# tiny models, sets it (docs/development.md, "Tests").
EAGER_ENV = "BEANS_RUN_EAGERLY"


def make_dataset(split, batch_size, seed=0, training=False, augment=False, augmenter=None):
    """tf.data over in-memory arrays: seeded per-epoch shuffle, batch, augment, prefetch. A seed
    gives the same batches and the same augmented images on every run (augmentation maps one
    batch at a time; `augmenter`: a make_augmenter(seed) of the caller's, else one is made).
    Under a thread cap (intra-op threads set), tf.data uses that many threads and no
    autotuning. Why: docs/training.md."""
    import tensorflow as tf

    threads = tf.config.threading.get_intra_op_parallelism_threads()
    ds = tf.data.Dataset.from_tensor_slices((split.x, split.y))
    if training:
        ds = ds.shuffle(len(split), seed=seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch_size)
    if training and augment:
        augmenter = augmenter or make_augmenter(seed)
        ds = ds.map(lambda x, y: (augmenter(x, training=True), y))
    if not threads:
        return ds.prefetch(tf.data.AUTOTUNE)
    options = tf.data.Options()
    options.autotune.enabled = False
    options.threading.private_threadpool_size = threads
    options.threading.max_intra_op_parallelism = 1
    return ds.with_options(options).prefetch(1)


def make_augmenter(seed):
    """Each image independently: mirrored left-right or not, upside down or not (a leaf photo
    has no up or left), then turned by up to +-18 degrees; each layer seeded from `seed`, its
    own stream (numpy's SeedSequence). Why two flip layers and these seeds: docs/training.md."""
    import keras

    # Keras takes seeds below 2**31 - 1
    flip_lr, flip_ud, turn = (int(s) % (2**31 - 1) for s in np.random.SeedSequence(seed).generate_state(3))
    return keras.Sequential([
        keras.layers.RandomFlip("horizontal", seed=flip_lr),
        keras.layers.RandomFlip("vertical", seed=flip_ud),
        keras.layers.RandomRotation(0.05, fill_mode="reflect", seed=turn),  # +-18 degrees
    ], name="augment")


@dataclass
class TrainResult:
    model: object
    history: dict           # per-epoch lists: loss, accuracy, val_loss, val_accuracy, lr
    val_accuracy: float     # best epoch's (the weights kept)
    epochs: int             # epochs this call ran (a continued training: after its start)
    seconds: float
    status: str = "ok"      # "ok", "nan" (loss diverged), "timeout" or "pruned"
    message: str = ""       # why it was pruned
    state: object = None    # checkpoint.State at the end, when the plan asked to keep it


def epoch_line(epoch, epochs, logs, seconds, lr):
    """One epoch's progress line; without a validation split (train(..., None)) no val_ fields."""
    nan = float("nan")
    val = (f"val_loss {logs.get('val_loss', nan):.4f}  val_acc {logs.get('val_accuracy', nan):.4f}  "
           if "val_loss" in logs or "val_accuracy" in logs else "")
    return (f"epoch {epoch:>3}/{epochs}  loss {logs.get('loss', nan):.4f}  "
            f"acc {logs.get('accuracy', nan):.4f}  {val}lr {lr:.2e}  {seconds:5.1f}s")


def continued_seed(seed, epochs_done):
    """The shuffle and augmentation seed of a training continued after `epochs_done` epochs: its
    own stream of `seed`, so that it does not replay the batches of its first epochs."""
    return int(np.random.SeedSequence([seed, epochs_done]).generate_state(1)[0] % (2**31 - 1))


class EpochLog:
    """Each epoch's learning rate into its logs ("lr"), and its progress line to `log`."""

    def __init__(self, model, epochs, log):
        self.model, self.epochs, self.log = model, epochs, log

    def on_epoch_begin(self, epoch, logs=None):
        import keras

        self.start = time.perf_counter()
        # the rate this epoch trains with (a decay schedule moves it at the epoch's end)
        self.lr = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))

    def on_epoch_end(self, epoch, logs=None):
        logs["lr"] = self.lr
        if self.log:
            self.log(epoch_line(epoch + 1, self.epochs, logs, time.perf_counter() - self.start, self.lr))


class TimeLimit:
    """Stops training at the first batch that ends `timeout` seconds after it was made."""

    def __init__(self, model, timeout):
        self.model, self.timeout, self.begin, self.expired = model, timeout, time.perf_counter(), False

    def on_train_batch_end(self, batch, logs=None):
        if self.timeout is not None and time.perf_counter() - self.begin > self.timeout:
            self.expired = self.model.stop_training = True


class Prune:
    """Stops training at the end of the first epoch that `bar` (tuning.pruning.Bar) stops: the
    best validation accuracy so far below the finished trials' median at that epoch. Called
    last: an epoch that early stopping (or a time limit, or NaN) already ends is not pruned,
    since pruning would save nothing there and cost the training its result."""

    def __init__(self, model, bar, epochs):
        self.model, self.bar, self.epochs, self.best, self.message = model, bar, epochs, -math.inf, ""

    def on_epoch_end(self, epoch, logs=None):
        score = (logs or {}).get("val_accuracy", math.nan)
        if math.isfinite(score):
            self.best = max(self.best, score)
        if self.model.stop_training or self.bar is None or self.message:
            return
        if self.bar.stops(epoch + 1, self.best, self.epochs):
            self.message = self.bar.why(epoch + 1, self.best)
            self.model.stop_training = True


HOOKS = ("on_epoch_begin", "on_epoch_end", "on_train_batch_end", "on_train_end")


def as_callback(hooks):
    """A Keras LambdaCallback calling the `on_...` methods that `hooks` has."""
    import keras

    return keras.callbacks.LambdaCallback(**{n: getattr(hooks, n) for n in HOOKS if hasattr(hooks, n)})


def train(hp, train_split, val_split, seed=0, log=print, keep_best=True, plan=None, callbacks=()):
    """Trains a model; early-stops on validation accuracy and keeps the best weights
    (keep_best=False: the last epoch's, for measurements that must not pick an epoch on the
    validation split they then score). With `val_split` None there is nothing to stop on or
    pick by: all hp.epochs train, the last epoch's weights are kept, val_accuracy is NaN.

    `plan` (checkpoint.Plan): continue a saved State up to hp.epochs, spread the learning-rate
    schedule over more epochs than hp.epochs, return the end State, stop at the first batch past
    a time limit (status "timeout"), stop at the end of an epoch that falls behind the finished
    trials (status "pruned", tuning.pruning).
    `callbacks`: more Keras callbacks, called after each epoch's log line and before early
    stopping reads the epoch's logs."""
    import keras
    import tensorflow as tf

    plan = plan or checkpoint.Plan()
    if val_split is None and keep_best:
        raise ValueError("keep_best needs a validation split to pick the best epoch on")
    tf.get_logger().setLevel("ERROR")  # each new model retraces tf.functions; that is expected here
    keras.backend.clear_session()  # free the previous model's graph and memory
    keras.utils.set_random_seed(seed)
    steps = math.ceil(len(train_split) / hp.batch_size)
    model = cnn.build_model(hp, train_split.x.shape[1], num_classes=train_split.num_classes, seed=seed)
    model.compile(optimizer=cnn.make_optimizer(hp, steps, plan.horizon), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"], run_eagerly=os.environ.get(EAGER_ENV) == "1")
    start = plan.start
    done = start.epochs if start is not None else 0
    if start is not None:
        checkpoint.restore(model, start)
        seed = continued_seed(seed, done)
    # the snapshot first: it reads the weights before early stopping puts the best ones back
    snapshot, limit, prune = checkpoint.Snapshot(model), TimeLimit(model, plan.timeout), Prune(model, plan.prune, hp.epochs)
    stopper = checkpoint.EarlyStop(model, hp.patience, keep_best, start) if val_split is not None else None
    hooks = [as_callback(snapshot), as_callback(EpochLog(model, hp.epochs, log)), *callbacks,
             keras.callbacks.TerminateOnNaN(), as_callback(limit), *([as_callback(stopper)] if stopper else []),
             as_callback(prune)]
    earlier = start.history if start is not None else {}
    if start is not None and (start.stopped or done >= hp.epochs):
        history = earlier  # nothing left to train: early stopping ended it, or it is long enough
        if keep_best and start.best_weights is not None:
            model.set_weights(start.best_weights)
    else:
        fit = model.fit(
            make_dataset(train_split, hp.batch_size, seed=seed, training=True, augment=hp.augment),
            validation_data=None if val_split is None else make_dataset(val_split, hp.batch_size),
            epochs=hp.epochs, initial_epoch=done, verbose=0, shuffle=False,  # make_dataset shuffles
            callbacks=hooks,
        )
        history = {k: [*earlier.get(k, []), *(float(v) for v in vals)] for k, vals in fit.history.items()}
    seconds = time.perf_counter() - limit.begin
    losses = history.get("loss", [])
    diverged = any(not math.isfinite(v) for v in losses)
    vals = [v for v in history.get("val_accuracy", []) if math.isfinite(v)]
    status = "nan" if diverged else "timeout" if limit.expired else "pruned" if prune.message else "ok"
    state = None
    if plan.keep and status == "ok":
        state = snapshot.state(history, stopper) if snapshot.weights is not None else start
    scored = vals and status in ("ok", "pruned")  # a pruned training's score so far
    return TrainResult(model=model, history=history, val_accuracy=max(vals) if scored else float("nan"),
                       epochs=len(losses) - done, seconds=seconds, status=status, message=prune.message, state=state)


def evaluate(model, split, batch_size=64):
    """Accuracy of `model` on `split`."""
    _, accuracy = model.evaluate(make_dataset(split, batch_size), verbose=0)
    return float(accuracy)
