"""Check (not a test; it needs PyPI): does installing the package find a TensorFlow wheel on
each platform the README promises?

pip evaluates a requirement's environment marker against the machine it runs on, even under
`pip download --platform`, so this script evaluates the markers of pyproject.toml's
[project].dependencies itself for each target (packaging.markers, the library pip uses), then
asks pip for the selected TensorFlow requirement as a binary wheel for that platform
(tests/test_requirements.py checks the markers offline):

    python experiments/wheels.py                        # the newest release each line allows
    python experiments/wheels.py --version 2.21.0       # one release
"""

import argparse
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

from packaging.requirements import Requirement

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"
PYTHON = "3.11"
# name: (the marker environment pip would see there, pip's --platform tags for its wheels)
PLATFORMS = {
    "Linux x86-64": ({"sys_platform": "linux", "platform_machine": "x86_64"},
                     ["manylinux_2_17_x86_64", "manylinux_2_27_x86_64", "manylinux_2_28_x86_64"]),
    "Linux aarch64": ({"sys_platform": "linux", "platform_machine": "aarch64"},
                      ["manylinux_2_17_aarch64", "manylinux_2_27_aarch64", "manylinux_2_28_aarch64"]),
    "macOS arm64": ({"sys_platform": "darwin", "platform_machine": "arm64"}, ["macosx_12_0_arm64"]),
    "Windows x86-64": ({"sys_platform": "win32", "platform_machine": "AMD64"}, ["win_amd64"]),
}


def requirements(path=PYPROJECT):
    """The package's own requirements, [project].dependencies of a pyproject.toml."""
    return [Requirement(line) for line in tomllib.loads(Path(path).read_text())["project"]["dependencies"]]


def selected(reqs, environment, names=("tensorflow", "tensorflow-cpu")):
    """The requirements among `names` whose marker holds in `environment` (a partial marker
    environment: the rest is this Python's)."""
    return [r for r in reqs if r.name in names and (r.marker is None or r.marker.evaluate(environment))]


def download(req, tags, version=None):
    """pip's answer for one requirement's wheel on one platform: (ok, the wheel's file name or
    pip's last line)."""
    spec = f"{req.name}=={version}" if version else f"{req.name}{req.specifier}"
    with tempfile.TemporaryDirectory() as folder:
        command = [sys.executable, "-m", "pip", "download", spec, "--no-deps", "--only-binary=:all:",
                   "--python-version", PYTHON, "-d", folder, "--quiet", *(f"--platform={t}" for t in tags)]
        done = subprocess.run(command, capture_output=True, text=True)
        wheels = sorted(p.name for p in Path(folder).glob("*.whl"))
    if done.returncode == 0 and wheels:
        return True, wheels[0]
    lines = [line for line in done.stderr.splitlines() if line.startswith("ERROR")] or done.stderr.splitlines()
    return False, (lines[-1] if lines else f"pip exit code {done.returncode}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--version", help="a TensorFlow release, e.g. 2.21.0 (default: the newest allowed)")
    parser.add_argument("--pyproject", type=Path, default=PYPROJECT, help="default: the project's")
    args = parser.parse_args(argv)
    reqs = requirements(args.pyproject)
    failed = 0
    for name, (environment, tags) in PLATFORMS.items():
        chosen = selected(reqs, environment)
        if len(chosen) != 1:
            print(f"{name:15s} {len(chosen)} TensorFlow requirements apply: {[str(r) for r in chosen]}")
            failed += 1
            continue
        ok, what = download(chosen[0], tags, args.version)
        failed += not ok
        print(f"{name:15s} {chosen[0].name:15s} {'wheel' if ok else 'NONE '}  {what}", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
