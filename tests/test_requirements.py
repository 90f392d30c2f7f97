"""pyproject.toml picks a TensorFlow with a wheel on every platform the README names: the CPU build
on Linux x86-64, the full one elsewhere (experiments/wheels.py asks PyPI; this reads the markers
offline, as pip evaluates them); requirements.txt installs the package itself, with every extra."""

import re

import pytest
from packaging.requirements import Requirement

from conftest import ROOT

tomllib = pytest.importorskip("tomllib")  # Python 3.11 and later

TENSORFLOW = ("tensorflow", "tensorflow-cpu")
# the marker environment pip sees on each platform (the rest is this Python's)
PLATFORMS = {
    "Linux x86-64": {"sys_platform": "linux", "platform_machine": "x86_64"},
    "Linux aarch64": {"sys_platform": "linux", "platform_machine": "aarch64"},
    "macOS arm64": {"sys_platform": "darwin", "platform_machine": "arm64"},
    "Windows x86-64": {"sys_platform": "win32", "platform_machine": "AMD64"},
}
EXPECTED = {"Linux x86-64": "tensorflow-cpu", "Linux aarch64": "tensorflow", "macOS arm64": "tensorflow",
            "Windows x86-64": "tensorflow"}


def project():
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def dependencies():
    return [Requirement(line) for line in project()["dependencies"]]


def selected(requirements, environment):
    """The TensorFlow requirements whose marker holds in `environment`."""
    return [r for r in requirements if r.name in TENSORFLOW and (r.marker is None or r.marker.evaluate(environment))]


@pytest.mark.parametrize("platform", sorted(EXPECTED))
def test_exactly_one_tensorflow_per_platform(platform):
    assert [r.name for r in selected(dependencies(), PLATFORMS[platform])] == [EXPECTED[platform]]


def test_every_other_requirement_applies_everywhere():
    """Only TensorFlow's lines carry markers: the rest, extras included, install on every platform."""
    extras = [Requirement(line) for lines in project().get("optional-dependencies", {}).values() for line in lines]
    others = [r for r in dependencies() + extras if r.name not in TENSORFLOW]
    assert others and all(r.marker is None for r in others)
    assert not [r for r in extras if r.name in TENSORFLOW], "TensorFlow is a dependency, not an extra"


def test_selection_reads_the_markers():
    """An unmarked tensorflow-cpu line (the old requirements.txt) applies on macOS too."""
    found = selected([Requirement("tensorflow-cpu>=2.16"), Requirement("numpy")], PLATFORMS["macOS arm64"])
    assert [r.name for r in found] == ["tensorflow-cpu"]


def test_requirements_txt_installs_the_package_with_every_extra():
    """Each dependency is stated once, in pyproject.toml: requirements.txt only installs the
    package (editable) with all its extras."""
    lines = [line.split("#", 1)[0].strip() for line in (ROOT / "requirements.txt").read_text().splitlines()]
    lines = [line for line in lines if line]
    assert len(lines) == 1, lines
    match = re.fullmatch(r"-e\s+\.\[([^\]]*)\]", lines[0])
    assert match, lines[0]
    extras = {extra.strip() for extra in match.group(1).split(",")}
    assert extras == set(project()["optional-dependencies"])
