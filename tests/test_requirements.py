"""requirements.txt picks a TensorFlow with a wheel on every platform the README names: the CPU
build on Linux x86-64, the full one elsewhere (bench/wheels.py asks PyPI; this checks the
markers offline)."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))

import wheels  # noqa: E402

EXPECTED = {"Linux x86-64": "tensorflow-cpu", "Linux aarch64": "tensorflow", "macOS arm64": "tensorflow",
            "Windows x86-64": "tensorflow"}


@pytest.mark.parametrize("platform", sorted(EXPECTED))
def test_exactly_one_tensorflow_per_platform(platform):
    environment, _ = wheels.PLATFORMS[platform]
    chosen = wheels.selected(wheels.requirements(), environment)
    assert [r.name for r in chosen] == [EXPECTED[platform]]


def test_every_other_requirement_applies_everywhere():
    """Only TensorFlow's lines carry markers: the rest install on every platform."""
    others = [r for r in wheels.requirements() if r.name not in ("tensorflow", "tensorflow-cpu")]
    assert others and all(r.marker is None for r in others)


def test_selection_reads_the_markers(tmp_path):
    """An unmarked tensorflow-cpu line (the old requirements.txt) applies on macOS too."""
    path = tmp_path / "requirements.txt"
    path.write_text("tensorflow-cpu>=2.16  # a comment\nnumpy\n")
    environment, _ = wheels.PLATFORMS["macOS arm64"]
    assert [r.name for r in wheels.selected(wheels.requirements(path), environment)] == ["tensorflow-cpu"]
