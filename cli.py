"""Command-line plumbing shared by every script: flags derived from `common.HParams`, the
one-line error contract (stderr, exit code 2), and the echo of a resolved configuration.

    python train_bn.py --help     # every hyperparameter flag here comes from HParams
"""

import argparse
import datetime
import sys
from dataclasses import fields
from pathlib import Path

from common import CLASS_NAMES, DATA_ENV, HPARAM_NAMES, HParams, UsageError, hparam_type


class RunFailed(Exception):
    """A run that could not produce its result (every trial failed): one line, exit code 1."""


class ArgumentParser(argparse.ArgumentParser):
    """argparse that reports a bad flag in one line (no usage block) with exit code 2."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message}\n")


def flag(name):
    return "--" + name.replace("_", "-")


def parse_bool(text):
    lowered = str(text).strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"not a boolean: {text!r}")


def parse_value(name, text):
    """Converts one command-line value to the type of HParams field `name`."""
    kind = hparam_type(name)
    try:
        if kind is bool:
            return parse_bool(text)
        if kind is int:
            number = float(text)
            if number != int(number):
                raise ValueError
            return int(number)
        return kind(text)
    except ValueError:
        raise UsageError(f"{flag(name)}: expected {kind.__name__}, got {text!r}") from None


def add_hparam_flags(parser, exclude=()):
    """One flag per HParams field; its help is the field's why-comment and default."""
    group = parser.add_argument_group("hyperparameters")
    for f in fields(HParams):
        if f.name in exclude:
            continue
        if f.type is bool:
            group.add_argument(flag(f.name), action=argparse.BooleanOptionalAction, default=None,
                               help=f"{f.metadata['help']} (default: {f.default})")
        else:
            group.add_argument(flag(f.name), default=None, metavar=f.type.__name__.upper(),
                               help=f"{f.metadata['help']} (default: {f.default})")


def hparams_from_args(args, **fixed):
    """Builds HParams from parsed flags (None = default) plus values fixed by the script."""
    values = {}
    for name in HPARAM_NAMES:
        raw = getattr(args, name, None)
        if raw is not None:
            values[name] = raw if isinstance(raw, bool) else parse_value(name, raw)
    values.update(fixed)
    return HParams(**values)


def add_run_flags(parser, image_size=64):
    parser.add_argument("--data-dir", default=None,
                        help=f"folder laid out train|validation|test/<class>/*.jpg "
                             f"(default: ${DATA_ENV}, else tfds.load('beans'))")
    parser.add_argument("--image-size", type=int, default=image_size,
                        help=f"images are resized to SIZE x SIZE once (default: {image_size}; "
                             "a CPU epoch is ~4x slower at 128)")
    parser.add_argument("--limit", type=int, default=None,
                        help="use at most N images per split, stratified by class (quick tries)")
    parser.add_argument("--seed", type=int, default=0, help="seed of every random choice (default: 0)")
    parser.add_argument("--out", default=None,
                        help="output folder (default: runs/<script>-<UTC time>/)")


def check_run_args(args):
    if args.image_size < 8:
        raise UsageError(f"--image-size must be >= 8, got {args.image_size}")
    if args.limit is not None and args.limit < len(CLASS_NAMES):
        raise UsageError(f"--limit must be >= {len(CLASS_NAMES)} (one image per class), got {args.limit}")
    if args.out is not None and not args.out.strip():
        raise UsageError("--out must name a folder, got an empty string")
    if args.out is not None and Path(args.out).exists() and not Path(args.out).is_dir():
        raise UsageError(f"--out must be a folder, {args.out} is a file")  # found before any training


def default_out(script):
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    return Path("runs") / f"{script}-{stamp}"


def run_cli(body, argv, prog):
    """Runs a script's body; bad input ends in one stderr line and exit code 2."""
    try:
        body(argv)
    except SystemExit as stop:  # argparse: --help (0) or a bad flag (2, message printed)
        return stop.code
    except UsageError as err:
        print(f"{prog}: error: {err}", file=sys.stderr)
        return 2
    except RunFailed as err:
        print(f"{prog}: error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    return 0


def print_config(title, items):
    print(title)
    width = max(len(k) for k in items)
    for key, value in items.items():
        print(f"  {key:<{width}}  {value}")
    sys.stdout.flush()
