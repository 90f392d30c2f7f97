"""checkpoint.py and the training's seeds: a continued training starts from its checkpoint and
keeps early stopping's memory; a State survives a round trip through bytes; a seed alone sets a
model's initial weights, whatever else draws random numbers."""

import dataclasses
import random
import threading

import keras
import numpy as np
import pytest

import beans_tune.cnn
import beans_tune.hparams
import beans_tune.images
import beans_tune.training
from beans_tune import checkpoint


def split(n, size=8, seed=0, shift=0.3):
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 3
    x = rng.normal(0.5, 0.2, (n, size, size, 3)).astype(np.float32)
    x[np.arange(n), :, :, y] += shift  # each class its own colour
    return beans_tune.images.Split(np.clip(x, 0, 1), y.astype(np.int64))


TRAIN, VAL = split(30), split(12, seed=1)


def hp(**changes):
    return beans_tune.hparams.HParams(**{"layers": 1, "units": 4, "batch_size": 8, "batch_norm": True, "epochs": 4,
                             "patience": 4, **changes})


class AtStart(keras.callbacks.Callback):
    """What the model holds when fit begins: its weights and the optimizer's step count."""

    def on_train_begin(self, logs=None):
        self.weights = self.model.get_weights()
        self.step = int(keras.ops.convert_to_numpy(self.model.optimizer.iterations))


def same(a, b):
    return len(a) == len(b) and all(np.array_equal(x, y) for x, y in zip(a, b))


@pytest.mark.parametrize("schedule", [{"decay": 0.5}, {"schedule": "cosine", "augment": True}])
@pytest.mark.slow
def test_a_continued_training_starts_from_its_checkpoint(schedule):
    whole = beans_tune.training.train(hp(**schedule), TRAIN, VAL, seed=3, log=None)
    first = beans_tune.training.train(hp(epochs=2, **schedule), TRAIN, VAL, seed=3, log=None,
                         plan=checkpoint.Plan(horizon=4, keep=True))
    assert first.state.epochs == 2 and first.epochs == 2
    saved = checkpoint.State.from_bytes(first.state.to_bytes())  # as the checkpoint file holds it
    at_start = AtStart()
    rest = beans_tune.training.train(hp(**schedule), TRAIN, VAL, seed=3, log=None, callbacks=[at_start],
                        plan=checkpoint.Plan(start=saved, horizon=4))
    assert same(at_start.weights, saved.weights)  # BN's moving statistics included
    assert at_start.step == 2 * 4  # two epochs of 4 batches: the schedule goes on from there
    assert rest.epochs == 2 and rest.history["loss"][:2] == first.history["loss"]  # only the epochs after it
    assert rest.history["lr"] == whole.history["lr"]  # the rates an uninterrupted training has


@pytest.mark.slow
def test_without_the_top_rungs_horizon_a_shorter_cosine_training_is_no_prefix():
    whole = beans_tune.training.train(hp(schedule="cosine"), TRAIN, VAL, seed=3, log=None)
    short = beans_tune.training.train(hp(epochs=2, schedule="cosine"), TRAIN, VAL, seed=3, log=None)
    assert short.history["lr"][1] < whole.history["lr"][1]  # decays to 0 over 2 epochs, not 4


def test_an_early_stopped_training_does_not_continue():
    # patience 0: every epoch that is not an improvement stops it; constant inputs never improve
    flat = beans_tune.images.Split(np.full((12, 8, 8, 3), 0.5, np.float32), np.arange(12) % 3)
    first = beans_tune.training.train(hp(epochs=3, patience=0, learning_rate=1e-9), flat, flat, seed=0, log=None,
                         plan=checkpoint.Plan(keep=True))
    assert first.state.stopped and first.state.epochs == 2
    rest = beans_tune.training.train(hp(epochs=9, patience=0, learning_rate=1e-9), flat, flat, seed=0, log=None,
                        plan=checkpoint.Plan(start=first.state, keep=True))
    assert rest.epochs == 0 and rest.val_accuracy == first.val_accuracy and rest.state.epochs == 2


def test_a_continued_training_carries_early_stoppings_memory_and_saves_its_last_weights():
    first = beans_tune.training.train(hp(epochs=1), TRAIN, VAL, seed=0, log=None, plan=checkpoint.Plan(keep=True))
    marker = [np.full_like(w, 0.5) for w in first.state.weights]
    # a best score no epoch can beat, one epoch already waited for it, and its weights
    start = dataclasses.replace(first.state, best=2.0, best_epoch=0, wait=1, best_weights=marker)
    rest = beans_tune.training.train(hp(epochs=6, patience=2), TRAIN, VAL, seed=0, log=None,
                        plan=checkpoint.Plan(start=start, keep=True))
    assert rest.epochs == 1  # one more epoch without a better score: 2 waited, stopped
    assert rest.state.stopped and rest.state.wait == 2 and rest.state.best == 2.0
    assert same(rest.model.get_weights(), marker)  # the best epoch's kept
    assert not same(rest.state.weights, marker)  # the saved state: the last epoch's
    assert same(rest.state.best_weights, marker)


def test_a_state_round_trips_through_bytes():
    state = checkpoint.State(epochs=3, weights=[np.ones((2, 2), np.float32)], optimizer=[np.int64(7), np.zeros(3)],
                             history={"loss": [1.0, 0.5, 0.25]}, best=0.5, best_epoch=1, wait=1,
                             best_weights=[np.full((2, 2), 2.0, np.float32)], stopped=True)
    back = checkpoint.State.from_bytes(state.to_bytes())
    assert dataclasses.asdict(back).keys() == dataclasses.asdict(state).keys()
    assert (back.epochs, back.history, back.best, back.best_epoch, back.wait, back.stopped) == (
        3, {"loss": [1.0, 0.5, 0.25]}, 0.5, 1, 1, True)
    assert np.array_equal(back.weights[0], state.weights[0]) and int(back.optimizer[0]) == 7
    assert np.array_equal(back.best_weights[0], state.best_weights[0])


def test_a_seed_alone_sets_the_initial_weights():
    def weights(seed, elsewhere):
        random.seed(elsewhere)  # whatever Python's global stream holds: Keras draws unseeded initializers from it
        return beans_tune.cnn.build_model(hp(layers=2), image_size=8, seed=seed).get_weights()

    assert same(weights(5, elsewhere=1), weights(5, elsewhere=2))
    assert not same(weights(5, elsewhere=1), weights(6, elsewhere=1))


def test_draws_from_pythons_random_in_another_thread_leave_a_training_as_it_was(monkeypatch):
    # A Dask worker's event loop draws from the process's global random at moments that vary:
    # here, just before the model is built.
    reference = beans_tune.training.train(hp(epochs=2), TRAIN, VAL, seed=3, log=None)
    build = beans_tune.cnn.build_model

    def after_another_threads_draws(*args, **kwargs):
        other = threading.Thread(target=lambda: [random.random() for _ in range(3)])
        other.start()
        other.join()
        return build(*args, **kwargs)

    monkeypatch.setattr(beans_tune.cnn, "build_model", after_another_threads_draws)
    again = beans_tune.training.train(hp(epochs=2), TRAIN, VAL, seed=3, log=None)
    assert again.history["loss"] == reference.history["loss"]
    assert again.history["val_loss"] == reference.history["val_loss"]
