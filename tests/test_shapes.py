"""experiments/shapes.py: the generated folder the docs use to try one's own data."""

import importlib.util

import numpy as np
import pytest
from PIL import Image

from conftest import ROOT

spec = importlib.util.spec_from_file_location("shapes", ROOT / "experiments" / "shapes.py")
shapes = importlib.util.module_from_spec(spec)
spec.loader.exec_module(shapes)


def test_k_classes_in_train_only_each_its_own_hue(tmp_path):
    assert shapes.main([str(tmp_path / "f"), "--classes", "3", "--per-class", "4", "--size", "24"]) == 0
    assert sorted(p.name for p in (tmp_path / "f").iterdir()) == ["train"]
    folders = sorted((tmp_path / "f" / "train").iterdir())
    assert [p.name for p in folders] == ["bar_h", "bar_v", "cross"]
    files = [sorted(p.glob("*.png")) for p in folders]
    assert [len(f) for f in files] == [4, 4, 4]
    assert all(Image.open(f).size == (24, 24) and Image.open(f).mode == "RGB" for group in files for f in group)
    # the same seed writes the same pixels
    assert shapes.main([str(tmp_path / "g"), "--classes", "3", "--per-class", "4", "--size", "24"]) == 0
    assert np.array_equal(np.asarray(Image.open(tmp_path / "g/train/cross/cross_003.png")),
                          np.asarray(Image.open(files[2][3])))


def test_an_existing_folder_and_bad_sizes_are_refused(tmp_path, capsys):
    (tmp_path / "f").mkdir()
    for argv in ([str(tmp_path / "f")], [str(tmp_path / "g"), "--classes", "7"],
                 [str(tmp_path / "g"), "--per-class", "2"]):
        with pytest.raises(SystemExit) as exit_:
            shapes.main(argv)
        assert exit_.value.code == 2
    assert not (tmp_path / "g").exists()
