"""graphs.py: a continued training is the uninterrupted one, a reused compiled model trains as
a fresh one and is traced once, a training's state survives a round trip through bytes."""

import dataclasses

import numpy as np
import pytest

import common
import graphs


def split(n, size=8, seed=0, shift=0.3):
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 3
    x = rng.normal(0.5, 0.2, (n, size, size, 3)).astype(np.float32)
    x[np.arange(n), :, :, y] += shift  # each class its own colour
    return common.Split(np.clip(x, 0, 1), y.astype(np.int64))


TRAIN, VAL = split(30), split(12, seed=1)


def hp(**changes):
    return common.HParams(**{"layers": 1, "units": 4, "batch_size": 8, "batch_norm": True, "epochs": 4,
                             "patience": 4, **changes})


@pytest.mark.parametrize("schedule", [{}, {"decay": 0.5}, {"schedule": "cosine"}, {"augment": True}])
@pytest.mark.slow
def test_a_continued_training_is_the_uninterrupted_one(schedule):
    whole = common.train(hp(**schedule), TRAIN, VAL, seed=3, log=None)
    first = common.train(hp(epochs=2, **schedule), TRAIN, VAL, seed=3, log=None,
                         plan=graphs.Plan(horizon=4, keep=True))
    assert first.state.epochs == 2 and first.epochs == 2
    saved = graphs.State.from_bytes(first.state.to_bytes())  # as the checkpoint file holds it
    rest = common.train(hp(**schedule), TRAIN, VAL, seed=3, log=None, plan=graphs.Plan(start=saved, horizon=4))
    assert rest.epochs == 2  # only the epochs after the state's
    assert rest.history == whole.history  # same batches, same rates, same weights: the same curves
    assert rest.val_accuracy == whole.val_accuracy


@pytest.mark.slow
def test_a_continued_training_is_the_uninterrupted_one_in_graph_mode(graph_mode):
    test_a_continued_training_is_the_uninterrupted_one({"schedule": "cosine", "augment": True})


@pytest.mark.slow
def test_without_the_top_rungs_horizon_a_shorter_cosine_training_is_no_prefix():
    whole = common.train(hp(schedule="cosine"), TRAIN, VAL, seed=3, log=None)
    short = common.train(hp(epochs=2, schedule="cosine"), TRAIN, VAL, seed=3, log=None)
    assert short.history["lr"][1] < whole.history["lr"][1]  # decays to 0 over 2 epochs, not 4


def test_an_early_stopped_training_does_not_continue():
    # patience 0: every epoch that is not an improvement stops it; constant inputs never improve
    flat = common.Split(np.full((12, 8, 8, 3), 0.5, np.float32), np.arange(12) % 3)
    first = common.train(hp(epochs=3, patience=0, learning_rate=1e-9), flat, flat, seed=0, log=None,
                         plan=graphs.Plan(keep=True))
    assert first.state.stopped and first.state.epochs == 2
    rest = common.train(hp(epochs=9, patience=0, learning_rate=1e-9), flat, flat, seed=0, log=None,
                        plan=graphs.Plan(start=first.state, keep=True))
    assert rest.epochs == 0 and rest.val_accuracy == first.val_accuracy and rest.state.epochs == 2


def test_a_continued_training_carries_early_stoppings_memory_and_saves_its_last_weights():
    first = common.train(hp(epochs=1), TRAIN, VAL, seed=0, log=None, plan=graphs.Plan(keep=True))
    marker = [np.full_like(w, 0.5) for w in first.state.weights]
    # a best score no epoch can beat, one epoch already waited for it, and its weights
    start = dataclasses.replace(first.state, best=2.0, best_epoch=0, wait=1, best_weights=marker)
    rest = common.train(hp(epochs=6, patience=2), TRAIN, VAL, seed=0, log=None,
                        plan=graphs.Plan(start=start, keep=True))
    assert rest.epochs == 1  # one more epoch without a better score: 2 waited, stopped
    assert rest.state.stopped and rest.state.wait == 2 and rest.state.best == 2.0
    assert all(np.array_equal(a, b) for a, b in zip(rest.model.get_weights(), marker))  # the best epoch's kept
    assert not all(np.array_equal(a, b) for a, b in zip(rest.state.weights, marker))  # the saved state: the last's
    assert all(np.array_equal(a, b) for a, b in zip(rest.state.best_weights, marker))


@pytest.mark.slow
def test_a_reused_model_trains_as_a_fresh_one():
    graphs.clear()
    fresh = [common.train(hp(learning_rate=lr, decay=d, batch_size=b), TRAIN, VAL, seed=1, log=None).history
             for lr, d, b in ((1e-2, 0.0, 8), (3e-3, 0.5, 4), (1e-3, 0.0, 16))]
    reused = [common.train(hp(learning_rate=lr, decay=d, batch_size=b), TRAIN, VAL, seed=1, log=None,
                           plan=graphs.Plan(reuse=True)).history
              for lr, d, b in ((1e-2, 0.0, 8), (3e-3, 0.5, 4), (1e-3, 0.0, 16))]
    assert reused == fresh


@pytest.mark.slow
def test_a_search_seed_keeps_tensorflows_compiled_functions_and_trains_as_fresh(graph_mode, monkeypatch):
    """Trials that share a seed do not set TensorFlow's again (that clears its kernel cache, the
    compiled train and test functions with it), and still train as fresh ones do."""
    import tensorflow as tf

    graphs.clear()
    runs = ((1e-2, 0.0, 8), (3e-3, 0.0, 4), (1e-3, 0.0, 16))

    def history(seed, lr=1e-2, decay=0.0, batch=8, reuse=False):
        return common.train(hp(learning_rate=lr, decay=decay, batch_size=batch, augment=True), TRAIN, VAL,
                            seed=seed, log=None, plan=graphs.Plan(reuse=reuse)).history

    fresh = [history(2, *run) for run in runs]
    fresh_5 = history(5)
    history(2)  # TensorFlow's seed is 2 again
    calls = []
    original = tf.random.set_seed
    monkeypatch.setattr(tf.random, "set_seed", lambda value: (calls.append(value), original(value)))
    assert [history(2, *run, reuse=True) for run in runs] == fresh
    assert calls == [], "TensorFlow already had the seed: it is not set again"
    assert history(5, reuse=True) == fresh_5
    assert calls == [5], "another seed is set"
    history(5)
    assert calls == [5, 5], "without reuse every seed is set"


def test_a_kept_seed_leaves_python_numpy_and_keras_as_setting_it_does():
    import random

    import keras

    def draws():
        return random.random(), np.random.random(), float(keras.random.uniform(()))

    keras.utils.set_random_seed(7)
    expected = draws()
    graphs.seed(7, reuse=True)  # TensorFlow's seed is 7 already: the kept path
    assert draws() == expected
    with pytest.raises(ValueError):
        graphs.seed(None, reuse=True)  # as keras.utils.set_random_seed refuses it


def test_the_graph_key_separates_what_a_graph_bakes_in():
    key = graphs.graph_key(hp(), 8, 3, False)
    assert graphs.graph_key(hp(learning_rate=0.1, batch_size=32, epochs=9), 8, 3, False) == key  # set per training
    for changed in ({"units": 5}, {"layers": 2}, {"batch_norm": False}, {"beta_1": 0.8}, {"decay": 0.1},
                    {"schedule": "cosine"}, {"optimizer": "sgd"}, {"bn_momentum": 0.9}):
        assert graphs.graph_key(hp(**changed), 8, 3, False) != key, changed
    assert graphs.graph_key(hp(), 16, 3, False) != key
    assert graphs.graph_key(hp(), 8, 2, False) != key


def test_reused_compiled_models_have_the_width_of_each_trainings_classes():
    hp = common.HParams(layers=1, units=4, batch_size=4, epochs=1)
    rng = np.random.default_rng(0)
    widths = []
    for n in (3, 5, 3):  # as a search's reused models: each training gets a model of its own width
        split = common.Split(rng.random((2 * n, 8, 8, 3)).astype(np.float32), np.arange(2 * n) % n)
        result = common.train(hp, split, split, log=None, plan=graphs.Plan(reuse=True))
        widths.append(result.model.output_shape[-1])
    assert widths == [3, 5, 3]


def count_traces(monkeypatch):
    """How many times Keras's train step is traced (or run eagerly)."""
    import keras

    calls = []
    original = keras.Model.train_step

    def counting(self, data):
        calls.append(1)
        return original(self, data)

    monkeypatch.setattr(keras.Model, "train_step", counting)
    return calls


@pytest.mark.slow
def test_the_train_step_is_traced_once_and_not_again_on_reuse(graph_mode, monkeypatch):
    graphs.clear()
    traces = count_traces(monkeypatch)
    common.train(hp(epochs=2), TRAIN, VAL, seed=0, log=None, plan=graphs.Plan(reuse=True))
    assert len(traces) == 1  # Keras would trace twice: its optimizer and metrics are built beforehand
    common.train(hp(epochs=2, learning_rate=0.01, batch_size=4), TRAIN, VAL, seed=1, log=None,
                 plan=graphs.Plan(reuse=True))
    assert len(traces) == 1  # the same graph: no tracing at all
    common.train(hp(epochs=2, units=5), TRAIN, VAL, seed=1, log=None, plan=graphs.Plan(reuse=True))
    assert len(traces) == 2  # another architecture, traced once


def test_a_state_round_trips_through_bytes():
    state = graphs.State(epochs=3, weights=[np.ones((2, 2), np.float32)], optimizer=[np.int64(7), np.zeros(3)],
                         history={"loss": [1.0, 0.5, 0.25]}, best=0.5, best_epoch=1, wait=1,
                         best_weights=[np.full((2, 2), 2.0, np.float32)], stopped=True,
                         augmenter=[np.array([5, 9])])
    back = graphs.State.from_bytes(state.to_bytes())
    assert dataclasses.asdict(back).keys() == dataclasses.asdict(state).keys()
    assert (back.epochs, back.history, back.best, back.best_epoch, back.wait, back.stopped) == (
        3, {"loss": [1.0, 0.5, 0.25]}, 0.5, 1, 1, True)
    assert np.array_equal(back.weights[0], state.weights[0]) and int(back.optimizer[0]) == 7
    assert np.array_equal(back.best_weights[0], state.best_weights[0])
    assert np.array_equal(back.augmenter[0], [5, 9])


@pytest.mark.parametrize("changes, expected", [({"schedule": "cosine", "learning_rate": 0.02}, {"decay_steps": 4 * 4}),
                                               ({"decay": 0.5, "learning_rate": 0.02}, {"decay_rate": 0.5})])
@pytest.mark.slow
def test_a_saved_model_holds_keras_own_schedule_with_the_trainings_numbers(tmp_path, changes, expected):
    import keras

    result = common.train(hp(**changes), TRAIN, VAL, seed=0, log=None, plan=graphs.Plan(reuse=True))
    result.model.save(tmp_path / "model.keras")
    loaded = keras.models.load_model(tmp_path / "model.keras")  # with Keras alone: no class of ours
    config = loaded.optimizer.get_config()["learning_rate"]["config"]
    assert config["initial_learning_rate"] == pytest.approx(0.02)
    assert {k: config[k] for k in expected} == expected


@pytest.mark.slow
def test_a_searchs_trainings_reuse_compiled_models_and_its_final_model_does_not(data_dir, tmp_path, monkeypatch):
    import tune_grid

    plans, real = [], common.train

    def recording(*args, **kwargs):
        plans.append(kwargs.get("plan"))
        return real(*args, **kwargs)

    monkeypatch.setattr(common, "train", recording)
    assert tune_grid.main(["--data-dir", str(data_dir), "--out", str(tmp_path / "run"), "--image-size", "8",
                           "--learning-rate", "1e-3,3e-3", "--layers", "1", "--units", "4", "--epochs", "1",
                           "--final-epochs", "1", "--batch-size", "4"]) == 0
    assert [bool(p and p.reuse) for p in plans] == [True, True, False]  # two trials, then the kept model


@pytest.mark.parametrize("first, then, known", [
    # cosine over the horizon's 5 epochs of 6 steps: half way (step 15) at half the rate
    ({"schedule": "cosine", "learning_rate": 0.02, "epochs": 3}, {"schedule": "cosine", "learning_rate": 0.1, "epochs": 5},
     {15: 0.05, 30: 0.0}),
    # inverse time, per epoch of 6 steps: 0.1 / (1 + 2 * epoch)
    ({"decay": 0.5, "learning_rate": 0.02}, {"decay": 2.0, "learning_rate": 0.1}, {5: 0.1, 6: 0.1 / 3, 12: 0.1 / 5})])
def test_a_reused_graphs_schedule_gives_the_learning_rates_keras_own_schedule_gives(first, then, known):
    # one rule (common.schedule_parameters) for both: the variables' schedule, set for one
    # training and then for another, is Keras's schedule with the second training's numbers
    kind, arguments = common.schedule_parameters(hp(**first), steps_per_epoch=4)
    variable = graphs._Schedule(kind, arguments)
    variable.set(hp(**then), steps_per_epoch=6, horizon=5)
    keras_own = common.learning_rate_schedule(hp(**then), steps_per_epoch=6, horizon=5)
    steps = [0, 5, 6, 7, 12, 18, 29, 30, 31]
    np.testing.assert_array_equal([float(variable.schedule(s)) for s in steps], [float(keras_own(s)) for s in steps])
    np.testing.assert_allclose([float(keras_own(s)) for s in known], list(known.values()), rtol=1e-6, atol=1e-9)
    ours, theirs = variable.config(), keras_own.get_config()
    numbers = {k for k, v in theirs.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    assert ours.keys() == theirs.keys()
    assert {k: v for k, v in ours.items() if k not in numbers} == {k: v for k, v in theirs.items() if k not in numbers}
    assert {k: ours[k] for k in numbers} == pytest.approx({k: theirs[k] for k in numbers}, rel=1e-7)  # float32 rate
    assert type(ours["decay_steps"]) is int


@pytest.mark.slow
def test_draws_from_pythons_random_in_another_thread_leave_a_training_as_it_was(monkeypatch):
    # Keras draws the seeds of its initializers from Python's random. A Dask worker's event loop
    # draws from the process's global one at moments that vary: here, just before the model is built.
    import random
    import threading

    reference = common.train(hp(epochs=2), TRAIN, VAL, seed=3, log=None)
    build = common.build_model

    def after_another_threads_draws(*args, **kwargs):
        other = threading.Thread(target=lambda: [random.random() for _ in range(3)])
        other.start()
        other.join()
        return build(*args, **kwargs)

    monkeypatch.setattr(common, "build_model", after_another_threads_draws)
    again = common.train(hp(epochs=2), TRAIN, VAL, seed=3, log=None)
    assert again.history["loss"] == reference.history["loss"]
    assert again.history["val_loss"] == reference.history["val_loss"]
