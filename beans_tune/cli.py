"""Command-line plumbing shared by every script: flags derived from `hparams.HParams`, the
one-line error contract (stderr, exit code 2), and the echo of a resolved configuration.

    python train_bn.py --help     # every hyperparameter flag here comes from HParams
"""

import argparse
import contextlib
import datetime
import math
import signal
import sys
import threading
from dataclasses import fields
from pathlib import Path

from .hparams import HPARAM_NAMES, HParams, UsageError, describe_range, flag, parse_value
from .images import DATA_ENV


class RunFailed(Exception):
    """A run that could not produce its result (every trial failed): one line, exit code 1."""


class ArgumentParser(argparse.ArgumentParser):
    """argparse that reports a bad flag in one line (no usage block) with exit code 2, and
    takes flags only as spelled out: --learning-rat is an error, not --learning-rate, so that a
    flag added later can never change what an old command means."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message}\n")


def number(kind, low, high, low_open=False):
    """An argparse type: a finite `kind` (int or float) in [low, high] ((low, high] with
    low_open). A bad value is argparse's one-line error, exit code 2."""
    def parse(text):
        try:
            value = float(text)
            if not math.isfinite(value) or (kind is int and value != int(value)):
                raise ValueError
            value = kind(value) if kind is float else int(value)
        except (ValueError, OverflowError):
            raise argparse.ArgumentTypeError(f"expected {'an integer' if kind is int else 'a finite number'}, "
                                             f"got {text!r}") from None
        if value < low or value > high or (low_open and value == low):
            shown = (str(int(b)) if kind is int else f"{b:g}" for b in (low, high))
            raise argparse.ArgumentTypeError(f"must be in {'(' if low_open else '['}{', '.join(shown)}], got {text}")
        return value

    parse.__name__ = kind.__name__
    return parse


def add_hparam_flags(parser, exclude=()):
    """One flag per HParams field; its help is the field's why-comment and default."""
    group = parser.add_argument_group("hyperparameters")
    for f in fields(HParams):
        if f.name in exclude:
            continue
        if f.type is bool:  # true|false, as the tuning scripts take it (where true,false is a choice)
            group.add_argument(flag(f.name), default=None, metavar="true|false",
                               help=f"{f.metadata['help']} (default: {str(f.default).lower()})")
        else:
            span = f", range {describe_range(f.name)}" if describe_range(f.name) else ""
            group.add_argument(flag(f.name), default=None, metavar=f.type.__name__.upper(),
                               help=f"{f.metadata['help']} (default: {f.default}{span})")


def hparams_from_args(args, **fixed):
    """Builds HParams from parsed flags (None = default) plus values fixed by the script."""
    values = {}
    for name in HPARAM_NAMES:
        raw = getattr(args, name, None)
        if raw is not None:
            values[name] = parse_value(name, raw)
    values.update(fixed)
    return HParams(**values)


def add_run_flags(parser, image_size=64):
    parser.add_argument("--data-dir", default=None,
                        help=f"folder laid out train/<class>/*.jpg, with validation/ and test/ alike or carved "
                             f"from train/ (default: ${DATA_ENV}, else tfds.load('beans'))")
    parser.add_argument("--image-size", type=number(int, 8, 512), default=image_size,
                        help=f"images are resized to SIZE x SIZE once (default: {image_size}, range [8, 512]; "
                             "a CPU epoch is ~4x slower at 128)")
    parser.add_argument("--limit", type=number(int, 2, 10**6), default=None,
                        help="use at most N images per split, stratified by class (quick tries; "
                             "N >= the number of classes, one image per class)")
    parser.add_argument("--seed", type=number(int, 0, 2**32 - 1), default=0,
                        help="seed of every random choice (default: 0, range [0, 2**32 - 1], numpy's)")
    parser.add_argument("--out", default=None,
                        help="output folder (default: runs/<script>-<UTC time>/)")
    parser.add_argument("--tensorboard", action="store_true",
                        help="also write TensorBoard event files under OUT/tensorboard/ (epoch curves; a "
                             "search's trials as an HParams experiment): tensorboard --logdir OUT/tensorboard")


def empty_folder_flag(args, names=("data_dir", "out")):
    """Why one of these path flags is given but empty, or None. An empty --data-dir is not "no
    --data-dir" (that means tfds.load), and Path("") is the current folder."""
    for name in names:
        value = getattr(args, name, None)
        if value is not None and not value.strip():
            return f"{flag(name)} must name a folder, got an empty string"
    return None


def check_run_args(args):
    if getattr(args, "tensorboard", False):
        try:
            import tensorboard.plugins.hparams.api  # noqa: F401
        except ImportError:
            raise UsageError("--tensorboard needs the tensorboard package: pip install tensorboard") from None
        except Exception as err:  # noqa: BLE001 - a broken install (protobuf versions, say)
            raise UsageError(f"--tensorboard: the tensorboard package does not import ({err.__class__.__name__}: "
                             f"{str(err).splitlines()[0] if str(err) else ''})") from None
    if empty := empty_folder_flag(args):
        raise UsageError(empty)
    if args.out is not None and Path(args.out).exists() and not Path(args.out).is_dir():
        raise UsageError(f"--out must be a folder, {args.out} is a file")  # found before any training
    board = Path(args.out) / "tensorboard" if args.out else None
    if getattr(args, "tensorboard", False) and board is not None and board.exists() and not board.is_dir():
        raise UsageError(f"--tensorboard writes into {board}, which is a file")


def default_out(script):
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    return Path("runs") / f"{script}-{stamp}"


class _Interrupts:
    """Ctrl-C, remembered: Python drops a KeyboardInterrupt raised while a weakref or garbage-
    collector callback runs ("Exception ignored in ..."), as one can when Keras frees the last
    model between two trials; check_interrupted() raises it again where the run checks."""

    seen = False
    previous = signal.default_int_handler  # the handler this one stands in front of

    @classmethod
    def handler(cls, signum, frame):
        cls.seen = True
        cls.previous(signum, frame)  # Python's own raises KeyboardInterrupt


def check_interrupted():
    """Raises KeyboardInterrupt if Ctrl-C came during this run, also one that Python dropped."""
    if _Interrupts.seen:
        raise KeyboardInterrupt


@contextlib.contextmanager
def _remember_interrupts():
    _Interrupts.seen = False
    previous = signal.getsignal(signal.SIGINT) if threading.current_thread() is threading.main_thread() else None
    mine = callable(previous)  # not where Ctrl-C is ignored (SIG_IGN) or kills at once (SIG_DFL)
    if mine:
        _Interrupts.previous = previous
        signal.signal(signal.SIGINT, _Interrupts.handler)
    try:
        yield
    finally:
        if mine:
            signal.signal(signal.SIGINT, previous)


def run_cli(body, argv, prog):
    """Runs a script's body; bad input ends in one stderr line and exit code 2."""
    try:
        with _remember_interrupts():
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
