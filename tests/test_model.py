"""Hyperparameters, model structure, learning-rate schedule and train()."""

import dataclasses

import numpy as np
import pytest

import beans_tune.cnn
import beans_tune.hparams
import beans_tune.images
import beans_tune.training

pytestmark = pytest.mark.usefixtures("graph_mode")  # the model as users train it


def layer_graph(model):
    """(layer, inbound layer) pairs of a functional model, read from its public config."""
    pairs = []
    for entry in model.get_config()["layers"]:
        for node in entry["inbound_nodes"]:
            for arg in node["args"]:
                if isinstance(arg, dict) and "keras_history" in arg.get("config", {}):
                    pairs.append((model.get_layer(entry["name"]), model.get_layer(arg["config"]["keras_history"][0])))
    return pairs


@pytest.mark.parametrize("layers", [1, 3])
def test_bn_sits_between_each_linear_layer_and_its_relu(layers):
    model = beans_tune.cnn.build_model(beans_tune.hparams.HParams(layers=layers, units=8, batch_norm=True), image_size=16)
    pairs = layer_graph(model)
    relus = [(l, prev) for l, prev in pairs if l.__class__.__name__ == "Activation"]
    bns = [(l, prev) for l, prev in pairs if l.__class__.__name__ == "BatchNormalization"]
    assert len(relus) == layers + 1 and len(bns) == layers + 1  # every conv block + the dense layer
    for relu, prev in relus:
        assert prev.__class__.__name__ == "BatchNormalization", relu.name
    for bn, prev in bns:
        assert prev.__class__.__name__ in ("Conv2D", "Dense"), bn.name
        assert prev.use_bias is False, prev.name
    assert [l for l in model.layers if l.__class__.__name__ == "BatchNormalization"][0].momentum == beans_tune.hparams.HParams().bn_momentum == 0.6


def test_baseline_has_no_bn_and_keeps_biases():
    model = beans_tune.cnn.build_model(beans_tune.hparams.HParams(layers=2, units=8), image_size=16)
    names = [l.__class__.__name__ for l in model.layers]
    assert "BatchNormalization" not in names
    assert all(l.use_bias for l in model.layers if l.__class__.__name__ in ("Conv2D", "Dense"))
    # conv 3->32 and 32->64 (3x3, with bias), dense 64->8, output 8->3
    assert model.count_params() == (27 * 32 + 32) + (288 * 64 + 64) + (64 * 8 + 8) + (8 * 3 + 3)
    assert model.output_shape == (None, 3)


def test_dropout_follows_the_dense_relu_in_training_only():
    """dropout: the one layer it adds sits between the hidden layer's ReLU and the classes, drops
    in training and not at inference; at its default (0) the model is the one without it."""
    import numpy as np

    hp = beans_tune.hparams.HParams(layers=1, units=16, dropout=0.5)
    model = beans_tune.cnn.build_model(hp, image_size=8, seed=0)
    pairs = {layer.name: prev.name for layer, prev in layer_graph(model)}
    assert pairs["dropout"] == "dense_relu" and pairs["classes"] == "dropout"
    assert model.get_layer("dropout").rate == 0.5
    x = np.random.default_rng(0).random((4, 8, 8, 3)).astype("float32")
    assert np.array_equal(model(x, training=False), model(x, training=False))
    assert not np.array_equal(model(x, training=True), model(x, training=False))
    plain = beans_tune.cnn.build_model(beans_tune.hparams.HParams(layers=1, units=16), image_size=8, seed=0)
    assert [l.name for l in plain.layers] == [l.name for l in model.layers if l.name != "dropout"]


def test_deep_stacks_on_small_images_still_build():
    model = beans_tune.cnn.build_model(beans_tune.hparams.HParams(layers=6, units=4), image_size=8)
    assert model.output_shape == (None, 3)


def test_inverse_time_decay_per_epoch():
    hp = beans_tune.hparams.HParams(learning_rate=0.1, decay=0.5)
    schedule = beans_tune.cnn.learning_rate_schedule(hp, steps_per_epoch=10)
    values = [float(schedule(step)) for step in (0, 9, 10, 19, 20, 40)]
    np.testing.assert_allclose(values, [0.1, 0.1, 0.1 / 1.5, 0.1 / 1.5, 0.1 / 2, 0.1 / 3], rtol=1e-6)
    assert beans_tune.cnn.learning_rate_schedule(dataclasses.replace(hp, decay=0), 10) == 0.1


def test_cosine_schedule_falls_from_alpha_to_zero_over_the_epochs():
    hp = beans_tune.hparams.HParams(learning_rate=0.1, schedule="cosine", epochs=4)
    schedule = beans_tune.cnn.learning_rate_schedule(hp, steps_per_epoch=10)
    values = [float(schedule(step)) for step in (0, 10, 20, 30, 40, 50)]
    np.testing.assert_allclose(values, [0.1, 0.1 * (1 + 2 ** -0.5) / 2, 0.05, 0.1 * (1 - 2 ** -0.5) / 2, 0, 0],
                               rtol=1e-5, atol=1e-9)


def test_optimizer_follows_hparams():
    adam = beans_tune.cnn.make_optimizer(beans_tune.hparams.HParams(beta_1=0.8, beta_2=0.99, epsilon=1e-6), 10)
    assert (adam.__class__.__name__, adam.beta_1, adam.beta_2, adam.epsilon) == ("Adam", 0.8, 0.99, 1e-6)
    sgd = beans_tune.cnn.make_optimizer(beans_tune.hparams.HParams(optimizer="sgd", momentum=0.5), 10)
    assert (sgd.__class__.__name__, sgd.momentum) == ("SGD", 0.5)


@pytest.mark.parametrize("bad, message", [
    ({"learning_rate": 0}, "learning_rate must be > 0"),
    ({"learning_rate": -1e-3}, "learning_rate must be > 0"),
    ({"layers": 0}, "layers must be an integer >= 1"),
    ({"batch_size": 0}, "batch_size must be an integer >= 1"),
    ({"beta_1": 1.0}, r"beta_1 must be in \[0, 1\)"),
    ({"momentum": -0.1}, r"momentum must be in \[0, 1\)"),
    ({"optimizer": "rmsprop"}, "optimizer must be one of adam, sgd"),
    ({"schedule": "step"}, "schedule must be one of inverse-time, cosine"),
    ({"schedule": "cosine", "decay": 0.01}, "decay belongs to the inverse-time schedule"),
])
def test_impossible_hparams_are_refused(bad, message):
    with pytest.raises(beans_tune.hparams.UsageError, match=message):
        beans_tune.hparams.HParams(**bad)


def test_hparams_are_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        beans_tune.hparams.HParams().layers = 4


def random_split(n, size=8, seed=0):
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 3
    x = rng.random((n, size, size, 3)).astype(np.float32) * 0.3
    x[np.arange(n), :, :, y] += 0.7  # class = brightest channel
    return beans_tune.images.Split(x=x, y=y.astype(np.int64))


def noisy_split(n, seed, signal=0.15):
    """Images where the class is a faint tint: validation accuracy rises and falls again."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 3
    x = rng.random((n, 8, 8, 3)).astype(np.float32)
    x[np.arange(n), :, :, y] += signal
    return beans_tune.images.Split(x=x, y=y.astype(np.int64))


def test_train_returns_history_and_stops_early():
    hp = beans_tune.hparams.HParams(layers=1, units=4, epochs=6, patience=0, batch_size=8)
    lines = []
    result = beans_tune.training.train(hp, random_split(24), random_split(12, seed=1), seed=0, log=lines.append)
    assert result.status == "ok"
    assert 1 <= result.epochs <= 6 and len(lines) == result.epochs
    assert lines[0].startswith("epoch   1/6  loss ")
    assert set(result.history) >= {"loss", "accuracy", "val_loss", "val_accuracy", "lr"}
    assert result.seconds > 0


def scripted_validation(curve):
    """A Keras callback that replaces each epoch's validation accuracy with the next value of
    `curve` and keeps the weights each epoch ended with (its `weights`)."""
    import keras

    class Scripted(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            logs["val_accuracy"] = curve[epoch]
            self.weights.append(self.model.get_weights())

    scripted = Scripted()
    scripted.weights = []
    return scripted


@pytest.mark.parametrize("curve, patience, stopped_after, best", [
    ([0.5, 0.8, 0.7, 0.75, 0.6, 0.9, 0.95, 0.99], 2, 4, 1),  # best at epoch 2, then 2 without a better one
    ([0.5, 0.6, 0.6, 0.7, 0.65, 0.64, 0.63, 0.62], 3, 7, 3),  # a tie is no improvement
    ([0.5, 0.6, 0.6, 0.6, 0.6], 2, 4, 1),                     # ties alone: stopped, the first of them kept
    ([0.4, 0.5, 0.6, 0.7], 1, 4, 3),                          # still improving: every epoch runs
    ([0.5, 0.9, 0.6, 0.7], 5, 4, 1),                          # never stopped: the best epoch's weights kept all the same
])
def test_training_stops_patience_epochs_after_its_best_and_keeps_the_best_weights(curve, patience, stopped_after, best):
    hp = beans_tune.hparams.HParams(layers=1, units=4, epochs=len(curve), patience=patience, batch_size=8, learning_rate=1e-2)
    scripted = scripted_validation(curve)
    result = beans_tune.training.train(hp, random_split(24), random_split(12, seed=1), seed=0, log=None, callbacks=[scripted])
    assert result.epochs == stopped_after and result.history["val_accuracy"] == curve[:stopped_after]
    assert result.val_accuracy == curve[best]
    kept, at_best = result.model.get_weights(), scripted.weights[best]
    assert all(np.array_equal(k, b) for k, b in zip(kept, at_best, strict=True))
    if best != stopped_after - 1:  # the last epoch's weights differ from the kept ones
        assert not all(np.array_equal(k, b) for k, b in zip(kept, scripted.weights[-1], strict=True))


def test_keep_best_false_keeps_the_last_epochs_weights():
    scripted = scripted_validation([0.5, 0.9, 0.6, 0.7])
    hp = beans_tune.hparams.HParams(layers=1, units=4, epochs=4, patience=5, batch_size=8, learning_rate=1e-2)
    result = beans_tune.training.train(hp, random_split(24), random_split(12, seed=1), seed=0, log=None, keep_best=False,
                          callbacks=[scripted])
    assert result.epochs == 4 and result.val_accuracy == 0.9  # the best epoch's score, the last epoch's weights
    assert all(np.array_equal(k, b) for k, b in zip(result.model.get_weights(), scripted.weights[-1], strict=True))


def test_train_without_a_validation_split_runs_every_epoch():
    # patience 0 would stop at the first epoch that does not improve: with nothing to stop on, all 6 run
    hp = beans_tune.hparams.HParams(layers=1, units=4, epochs=6, patience=0, batch_size=8)
    lines = []
    result = beans_tune.training.train(hp, random_split(24), None, seed=0, log=lines.append, keep_best=False)
    assert result.status == "ok" and result.epochs == 6 and len(lines) == 6
    assert "val_" not in "".join(lines) and lines[0].startswith("epoch   1/6  loss ")
    assert set(result.history) == {"loss", "accuracy", "lr"} and np.isnan(result.val_accuracy)
    with pytest.raises(ValueError, match="keep_best needs a validation split"):
        beans_tune.training.train(hp, random_split(24), None, log=None)


def test_join_splits_keeps_every_image_in_order():
    a, b = random_split(4), random_split(3, seed=1)
    a, b = dataclasses.replace(a, files=("a",) * 4), dataclasses.replace(b, files=("b",) * 3)
    joined = beans_tune.images.join_splits(a, b)
    assert len(joined) == 7 and joined.files == ("a",) * 4 + ("b",) * 3
    np.testing.assert_array_equal(joined.x, np.concatenate([a.x, b.x]))
    np.testing.assert_array_equal(joined.y, np.concatenate([a.y, b.y]))


def test_joined_splits_keep_their_classes():
    a = beans_tune.images.Split(np.zeros((2, 4, 4, 3), np.float32), np.array([0, 1]), classes=("cat", "dog"))
    assert beans_tune.images.join_splits(a, a).classes == ("cat", "dog")
    with pytest.raises(ValueError, match="different classes"):
        beans_tune.images.join_splits(a, beans_tune.images.Split(a.x, a.y, classes=("x", "y")))


@pytest.mark.parametrize("augment", [False, True])
@pytest.mark.slow
def test_train_is_seeded(augment):
    hp = beans_tune.hparams.HParams(layers=1, units=4, epochs=2, batch_size=8, augment=augment)
    runs = [beans_tune.training.train(hp, random_split(24), random_split(12, seed=1), seed=seed, log=None)
            for seed in (5, 5, 6)]
    assert runs[0].history["loss"] == runs[1].history["loss"]
    assert runs[2].history["loss"] != runs[0].history["loss"]  # the seed, not a fixed one, decides


@pytest.mark.slow
def test_earlier_model_survives_the_next_trainings_clear_session():
    hp = beans_tune.hparams.HParams(layers=1, units=4, epochs=1, batch_size=8)
    val = random_split(12, seed=1)
    first = beans_tune.training.train(hp, random_split(24), val, seed=0, log=None)
    before = beans_tune.training.evaluate(first.model, val)
    beans_tune.training.train(dataclasses.replace(hp, batch_norm=True), random_split(24), val, seed=1, log=None)
    assert beans_tune.training.evaluate(first.model, val) == before


def nan_model(monkeypatch):
    """Makes build_model's output NaN, so that the first loss is NaN."""
    import keras

    real = beans_tune.cnn.build_model

    def poisoned(hp, image_size=64, **kw):
        model = real(hp, image_size, **kw)
        return keras.Model(model.input, keras.layers.Lambda(lambda t: t * float("nan"))(model.output))

    monkeypatch.setattr(beans_tune.cnn, "build_model", poisoned)


def test_diverging_loss_is_reported_as_nan(monkeypatch):
    nan_model(monkeypatch)
    hp = beans_tune.hparams.HParams(layers=1, units=4, epochs=3, batch_size=8)
    result = beans_tune.training.train(hp, random_split(24), random_split(12, seed=1), log=None)
    assert result.status == "nan"
    assert np.isnan(result.val_accuracy)
    assert result.epochs == 1  # TerminateOnNaN stopped it


def assert_scores_each_image_alone(model, image, others):
    import keras

    alone = model.predict(image, verbose=0)[0]
    beside = model.predict(np.concatenate([image, others]), verbose=0)[0]
    np.testing.assert_allclose(alone, beside, rtol=1e-5, atol=1e-6)
    # the scripts' test accuracy too: each image labelled as it scores alone, evaluate in batches gets them all
    x = np.concatenate([image, others])
    y = np.array([np.argmax(model.predict(x[i:i + 1], verbose=0)[0]) for i in range(len(x))])
    assert beans_tune.training.evaluate(model, beans_tune.images.Split(x, y), batch_size=4) == 1.0
    # the check has teeth: normalizing by the batch's own statistics moves the prediction
    batch_stats = keras.ops.convert_to_numpy(model(np.concatenate([image, others]), training=True))[0]
    assert np.abs(batch_stats - alone).max() > 1e-3


@pytest.mark.slow
def test_a_bn_models_prediction_for_an_image_does_not_depend_on_its_batch(tmp_path):
    # At inference BN normalizes with the moving averages it learned, never with the statistics
    # of the batch it is given: an image scores the same alone and beside very different images.
    import keras

    hp = beans_tune.hparams.HParams(layers=2, units=8, epochs=2, batch_size=8, batch_norm=True)
    result = beans_tune.training.train(hp, random_split(24), random_split(12, seed=1), seed=0, log=None)
    image = random_split(3, seed=2).x[:1]
    others = np.random.default_rng(3).random((7, 8, 8, 3)).astype(np.float32) * 5  # far from the training images
    assert_scores_each_image_alone(result.model, image, others)
    result.model.save(tmp_path / "model.keras")
    assert_scores_each_image_alone(keras.models.load_model(tmp_path / "model.keras"), image, others)  # as users get it


def test_the_saved_model_resizes_and_scales_raw_images_as_the_data_pipeline_does():
    import keras
    import tensorflow as tf

    network = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Flatten(),
                                keras.layers.Dense(3, activation="softmax",
                                                   kernel_initializer=keras.initializers.GlorotUniform(seed=0))])
    raw = np.random.default_rng(0).integers(0, 256, (2, 12, 12, 3)).astype(np.float32)  # decoded files, 0-255
    decoded = tf.image.resize(raw, (8, 8), antialias=True).numpy() / 255.0  # as images.py prepares a split
    saved = beans_tune.cnn.for_raw_images(network, 8)
    np.testing.assert_allclose(saved.predict(raw, verbose=0), network.predict(decoded, verbose=0), atol=1e-6)
