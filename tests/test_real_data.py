"""Smoke test on the real beans copy at ../shared/beans (or $BEANS_DATA_DIR); skipped where absent."""

import json

import numpy as np
import pytest

import beans_tune.folders
import beans_tune.images
import train_bn
from conftest import real_data_dir

REAL = real_data_dir()
pytestmark = [pytest.mark.skipif(REAL is None, reason="no ../shared/beans beside the project"),
              pytest.mark.usefixtures("graph_mode")]  # as users train


def test_split_sizes_and_class_names():
    files = beans_tune.folders.check_folder(REAL)
    assert {k: len(v) for k, v in files.items()} == {"train": 1034, "validation": 133, "test": 128}
    import tensorflow_datasets as tfds
    names = tfds.folder_dataset.ImageFolder(str(REAL)).info.features["label"].names
    assert tuple(names) == beans_tune.images.CLASS_NAMES


@pytest.mark.slow
def test_short_run_on_real_images(tmp_path):
    out = tmp_path / "run"
    code = train_bn.main(["--data-dir", str(REAL), "--limit", "30", "--image-size", "16", "--epochs", "1",
                          "--compare", "--out", str(out)])
    assert code == 0
    for name in ("baseline", "bn"):
        metrics = json.loads((out / name / "metrics.json").read_text())
        assert 0 <= metrics["test_accuracy"] <= 1 and metrics["limit"] == 30
    beans = beans_tune.images.Beans(REAL, image_size=16, limit=30)
    assert list(np.bincount(beans.validation.y)) == [10, 10, 10]
