"""The model: a small CNN with optional BatchNormalization between each linear layer and its
ReLU, and the optimizer and learning-rate schedule it trains with. Keras's public API only.

    model = build_model(HParams(batch_norm=True), image_size=64, num_classes=3, seed=0)
"""

import numpy as np


def build_model(hp, image_size=64, num_classes=3, seed=None):
    """`hp.layers` conv blocks then one dense hidden layer, softmax over `num_classes` classes.

    With BN every linear layer loses its bias (BN's beta replaces it) and is followed by
    BatchNormalization, then ReLU: Conv2D -> BN -> ReLU -> MaxPool, Dense -> BN -> ReLU.
    With a `seed`, each linear layer's initial weights come from a Glorot initializer seeded
    from it (its own stream): the same seed gives the same weights in any process or thread,
    whatever else draws random numbers there (a Dask worker's own threads do)."""
    import keras
    from keras import layers

    streams = iter(np.random.SeedSequence(seed).generate_state(hp.layers + 2) % (2**31 - 1)
                   if seed is not None else [None] * (hp.layers + 2))

    def init():
        stream = next(streams)
        return "glorot_uniform" if stream is None else keras.initializers.GlorotUniform(seed=int(stream))

    def linear_bn_relu(x, linear, name):
        x = linear(x)
        if hp.batch_norm:
            x = layers.BatchNormalization(momentum=hp.bn_momentum, name=f"{name}_bn")(x)
        return layers.Activation("relu", name=f"{name}_relu")(x)

    inputs = keras.Input((image_size, image_size, 3), name="image")
    x = inputs
    size = image_size
    for i in range(1, hp.layers + 1):
        filters = min(32 * 2 ** (i - 1), 256)
        conv = layers.Conv2D(filters, 3, padding="same", use_bias=not hp.batch_norm, kernel_initializer=init(),
                             name=f"conv{i}")
        x = linear_bn_relu(x, conv, f"conv{i}")
        if size >= 2:  # deep stacks on small images stop halving at 1x1
            x = layers.MaxPooling2D(name=f"pool{i}")(x)
            size //= 2
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    x = linear_bn_relu(x, layers.Dense(hp.units, use_bias=not hp.batch_norm, kernel_initializer=init(), name="dense"),
                       "dense")
    if hp.dropout:
        x = layers.Dropout(hp.dropout, seed=None if seed is None else seed % (2**31 - 1), name="dropout")(x)
    outputs = layers.Dense(num_classes, activation="softmax", kernel_initializer=init(), name="classes")(x)
    name = "cnn_bn" if hp.batch_norm else "cnn"
    return keras.Model(inputs, outputs, name=name)


def for_raw_images(model, image_size):
    """The trained `model` behind the preprocessing images.py applies, as the saved model: it takes
    raw RGB images (any size, values 0-255, a batch of one size) and resizes (bilinear, antialiased)
    and scales them to [0, 1] itself, so a user's photo goes in as it is decoded."""
    import keras
    from keras import layers

    raw = keras.Input((None, None, 3), name="raw_image")
    x = layers.Resizing(image_size, image_size, antialias=True, name="resize")(raw)
    x = layers.Rescaling(1 / 255, name="scale")(x)
    return keras.Model(raw, model(x), name=f"{model.name}_raw_images")

def schedule_parameters(hp, steps_per_epoch, horizon=None):
    """The learning-rate schedule `hp` asks for, as (kind, the Keras schedule's arguments), over
    `horizon` epochs (default hp.epochs). The one statement of the rule.

    inverse-time: alpha / (1 + decay * epoch), epoch counted in whole epochs (Keras
    InverseTimeDecay, staircase); constant when decay is 0. cosine: alpha * (1 + cos(pi * step /
    (horizon * steps_per_epoch))) / 2, from alpha at the first step to 0 after the last epoch
    (Keras CosineDecay); early stopping cuts it short."""
    horizon = hp.epochs if horizon is None else horizon
    if hp.schedule == "cosine":
        return "cosine", {"initial_learning_rate": hp.learning_rate, "decay_steps": horizon * steps_per_epoch}
    if hp.decay == 0:
        return "constant", {"learning_rate": hp.learning_rate}
    return "inverse-time", {"initial_learning_rate": hp.learning_rate, "decay_steps": steps_per_epoch,
                            "decay_rate": hp.decay, "staircase": True}


SCHEDULE_CLASSES = {"cosine": "CosineDecay", "inverse-time": "InverseTimeDecay"}  # in keras.optimizers.schedules


def learning_rate_schedule(hp, steps_per_epoch, horizon=None):
    """A Keras schedule (or a float, for a constant rate) as schedule_parameters states it."""
    import keras

    kind, arguments = schedule_parameters(hp, steps_per_epoch, horizon)
    if kind == "constant":
        return arguments["learning_rate"]
    return getattr(keras.optimizers.schedules, SCHEDULE_CLASSES[kind])(**arguments)


def _adam(hp, lr):
    import keras
    return keras.optimizers.Adam(lr, beta_1=hp.beta_1, beta_2=hp.beta_2, epsilon=hp.epsilon)


def _sgd(hp, lr):
    import keras
    return keras.optimizers.SGD(lr, momentum=hp.momentum)


OPTIMIZERS = {"adam": _adam, "sgd": _sgd}


def make_optimizer(hp, steps_per_epoch, horizon=None):
    return OPTIMIZERS[hp.optimizer](hp, learning_rate_schedule(hp, steps_per_epoch, horizon))

