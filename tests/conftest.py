"""Shared fixtures: tiny generated beans-like image folders (no real data, no network), and
instant trainings with predictable scores."""

import dataclasses
import os
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# One TensorFlow thread per op pool, here and in every script a test starts: the tests' models are
# tiny, and with several test processes on two cores more threads only wait on each other (the suite
# ran a fifth faster). Tests of --threads-per-trial set their threads explicitly.
os.environ.setdefault("TF_NUM_INTRAOP_THREADS", "1")
os.environ.setdefault("TF_NUM_INTEROP_THREADS", "1")
# Keras steps run eagerly, here and in every script and Dask worker a test starts: tracing a graph
# costs seconds per training whatever its size, and the tests train hundreds of tiny models (a
# 1-epoch training of 12 8x8 images: 4.0 s traced, 1.0 s eager). tests/test_model.py and
# tests/test_real_data.py train in graph mode, as users do.
os.environ.setdefault("BEANS_RUN_EAGERLY", "1")

CLASSES = ("angular_leaf_spot", "bean_rust", "healthy")
# each class's mean colour: red, green, blue first (beans' three), then their mixtures
COLOURS = ((200, 0, 0), (0, 200, 0), (0, 0, 200), (200, 200, 0), (0, 200, 200), (200, 0, 200), (200, 200, 200),
           (0, 0, 0))


def load_experiment(name):
    """experiments/<name>.py, loaded from its file and registered under its name, as an
    experiment's `import shared` (or `import resplit`) finds its neighbour when it runs as a script."""
    import importlib.util
    import sys

    spec = importlib.util.spec_from_file_location(name, ROOT / "experiments" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def make_image_folder(root, per_class=4, size=12, seed=0, splits=("train", "validation", "test"), classes=CLASSES):
    """Writes per_class images (an int, or {class: count}) per class and split; each class has
    its own mean colour (up to 8 classes), so a model can learn something. In train, the first
    class holds a grayscale PNG and the second an RGBA PNG, to exercise conversion to RGB."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    root = Path(root)
    for split in splits:
        for label, name in enumerate(classes):
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(per_class[name] if isinstance(per_class, dict) else per_class):
                base = np.zeros((size, size, 3))
                base[...] = COLOURS[label]
                pixels = np.clip(base + rng.normal(0, 25, base.shape), 0, 255).astype(np.uint8)
                image = Image.fromarray(pixels)
                if split == "train" and i == 0 and label == 0:
                    image.convert("L").save(folder / f"{name}_{i}_gray.png")
                elif split == "train" and i == 0 and label == 1:
                    image.convert("RGBA").save(folder / f"{name}_{i}_rgba.png")
                else:
                    image.save(folder / f"{name}_{i}.jpg", quality=95)
    return root


def pytest_collection_modifyitems(config, items):
    """The tests marked slow at the start of every test process's share. pytest-xdist's
    worksteal gives each process a contiguous share of the list at the start (the first
    len // n tests, then the next len(rest) // (n - 1), ...), then lets an idle one take queued
    tests from another: one slow test left queued last would keep one process busy while the
    others wait. The slow tests are dealt in turn to the shares' starts; the others follow in
    file order, so a module's tests (and its module-scoped fixtures) stay together."""
    workers = int(getattr(config, "workerinput", {}).get("workercount", 1))
    if workers < 2:
        return
    slow = [item for item in items if item.get_closest_marker("slow")]
    rest = [item for item in items if not item.get_closest_marker("slow")]
    ordered, left = [], len(items)
    for k in range(workers):
        size = left // (workers - k)  # worksteal's share for the k-th process
        dealt = slow[k::workers]
        take = max(0, size - len(dealt))
        ordered += dealt + rest[:take]
        rest, left = rest[take:], left - size
    items[:] = ordered + rest


@pytest.fixture
def graph_mode(monkeypatch):
    """Keras traces its steps into graphs, as outside the tests (see BEANS_RUN_EAGERLY above)."""
    monkeypatch.delenv("BEANS_RUN_EAGERLY", raising=False)


@pytest.fixture
def data_dir(tmp_path):
    return make_image_folder(tmp_path / "beans")


@pytest.fixture
def scored(monkeypatch):
    """beans_tune.training.train made instant and predictable: scored layers/10 + units/1000, plus the epochs
    asked for / 10^4 (so that a longer rung scores a little higher, as it would). Only the final
    model (the one call that logs its epochs) really trains, for 1 epoch, to have a model to
    save. Returns the epochs each call asked for."""
    import beans_tune.training

    asked = []
    patch_train(monkeypatch, instant_train(beans_tune.training, asked))
    return asked


def patch_train(monkeypatch, fake):
    """Makes `fake` beans_tune.training.train for every training but a search's time estimate (the
    call that brings its own clock): that one gets at once a result with no epoch timed (the search
    then says it made no estimate), so a fake counts and sees only the trainings it is about."""
    import beans_tune.training

    def train(hp, *args, **kwargs):
        if is_estimate(kwargs):
            return beans_tune.training.TrainResult(None, {}, float("nan"), 0, 0.0)
        return fake(hp, *args, **kwargs)

    train.unwrapped = getattr(fake, "unwrapped", fake)
    monkeypatch.setattr(beans_tune.training, "train", train)


def is_estimate(kwargs):
    """Whether a beans_tune.training.train call is a search's time estimate, the one that brings its
    own callback (its clock)."""
    return bool(kwargs.get("callbacks"))


def is_trial(kwargs):
    """Whether a beans_tune.training.train call (its keyword arguments) is a search's trial, which logs through
    a tuning.runner.Heartbeat, or a measurement that logs nothing; not a final model, nor the time estimate."""
    from beans_tune.tuning.runner import Heartbeat

    log = kwargs.get("log")
    return (log is None or isinstance(log, Heartbeat)) and not is_estimate(kwargs)


def instant_train(training, asked):
    """The `scored` fixture's beans_tune.training.train."""
    real = training.train

    def train(hp, *args, **kwargs):
        asked.append(hp.epochs)
        score = hp.layers / 10 + hp.units / 1000 + hp.epochs / 1e4
        if is_trial(kwargs):
            plan = kwargs.get("plan")
            done = plan.start.epochs if plan and plan.start else 0  # continuing halving: only the rest
            state = None
            if plan and plan.keep:
                from beans_tune import checkpoint

                state = checkpoint.State(epochs=hp.epochs, weights=[], optimizer=[], history={})
            return training.TrainResult(None, {}, score, hp.epochs - done, 0.0, state=state)
        result = real(dataclasses.replace(hp, epochs=1), *args, **kwargs)
        return dataclasses.replace(result, val_accuracy=score, epochs=hp.epochs)

    return train


def split_folders(split):
    """The split folders (train, validation, test) the images of a folder-loaded split lie in,
    sorted; [] for no split."""
    return sorted({Path(f).parts[-3] for f in split.files}) if split is not None else []


def real_data_dir():
    """../shared/beans beside the project (or $BEANS_DATA_DIR); None where absent."""
    for candidate in (os.environ.get("BEANS_DATA_DIR"), ROOT.parent / "shared" / "beans"):
        if candidate and (Path(candidate) / "train").is_dir():
            return Path(candidate)
    return None


def pytest_configure(config):
    # Keras and TensorFlow warn about numpy 2's copy keyword and about dataset shuffling on
    # every fit; neither says anything about this project's behaviour.
    config.addinivalue_line("filterwarnings", "ignore::DeprecationWarning")
    config.addinivalue_line("filterwarnings", "ignore::UserWarning")
