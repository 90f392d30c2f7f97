"""The hyperparameters: one frozen dataclass, `HParams`. Each field is declared once, with its
default, why that default, its sane range and the scale a search samples it on; the flags, their
help, the checks, the search space and the scikit-learn estimator's parameters all come from it.

    HParams(learning_rate=3e-3, batch_norm=True)   # a bad value is one UsageError line
"""

import dataclasses
import math
import numbers
from dataclasses import dataclass, field, fields

SCHEDULES = ("inverse-time", "cosine")  # learning-rate schedules (cnn.learning_rate_schedule)
OPTIMIZERS = ("adam", "sgd")            # cnn.make_optimizer
# How a search samples a range lo:hi of a field: "log" (log-uniform: spans decades), "1-log"
# (log(1 - x) uniform: 0.9 vs 0.999), "pow2" (powers of two), "linear" (uniform).
SCALES = ("log", "1-log", "pow2", "linear")


class UsageError(Exception):
    """Bad input from the user: reported as one line on stderr, exit code 2."""


def _hp(default, why, low=None, high=None, low_open=False, high_open=False, scale="linear"):
    """A hyperparameter: its default, why that default, its sane range (in --help too) and the
    scale a search samples a range of it on (SCALES; numeric fields only)."""
    return field(default=default, metadata={"help": why, "low": low, "high": high, "low_open": low_open,
                                            "high_open": high_open, "scale": scale if low is not None else None})


def describe_range(name):
    """'[0, 1)', '(0, 10]', ... for a numeric HParams field; '' otherwise."""
    meta = _FIELDS[name].metadata
    if meta["low"] is None:
        return ""
    return (f"{'(' if meta['low_open'] else '['}{meta['low']:g}, {meta['high']:g}"
            f"{')' if meta['high_open'] else ']'}")


@dataclass(frozen=True)
class HParams:
    """Everything `train` needs besides the data. Flags are derived from these fields."""

    # Upper bounds are far beyond anything useful on beans; they exist so that a typo (an extra
    # zero) is refused in one line instead of exhausting memory or running for days.
    learning_rate: float = _hp(1e-3, "alpha; Adam's usual starting point, the first thing to tune",
                               0, 10, low_open=True, scale="log")
    momentum: float = _hp(0.9, "beta of SGD with momentum: averages over about 10 steps", 0, 1, high_open=True,
                         scale="1-log")
    beta_1: float = _hp(0.9, "Adam's first-moment beta: the paper's default, rarely tuned", 0, 1,
                        high_open=True, scale="1-log")
    beta_2: float = _hp(0.999, "Adam's second-moment beta: the paper's default", 0, 1, high_open=True,
                        scale="1-log")
    epsilon: float = _hp(1e-7, "Adam's epsilon: Keras's default, only guards the division", 0, 1, low_open=True,
                         scale="log")
    layers: int = _hp(3, "conv blocks: 3 halvings take 64x64 inputs to 8x8 feature maps", 1, 8)
    units: int = _hp(64, "hidden units of the dense layer: ample for a few classes", 1, 4096, scale="log")
    dropout: float = _hp(0.0, "share of the dense layer's outputs dropped at random in training; 0 keeps all", 0, 1,
                         high_open=True)
    decay: float = _hp(0.0, "learning-rate decay, alpha/(1+decay*epoch); 0 keeps alpha fixed", 0, 100,
                       scale="log")
    schedule: str = _hp("inverse-time", "inverse-time (alpha/(1+decay*epoch)) or cosine (alpha*(1+cos(pi*t/epochs))/2, "
                                        "every step, to 0 at the last epoch; takes no decay)")
    batch_size: int = _hp(32, "mini-batch size: 33 steps per epoch over beans' 1,034 train images", 1, 1024,
                        scale="pow2")
    optimizer: str = _hp("adam", "adam or sgd (SGD with momentum)")
    epochs: int = _hp(40, "upper bound: the baseline still improved at epoch 20 (~2.3 s/epoch at 64x64)",
                      1, 1000)
    patience: int = _hp(8, "epochs without a better validation accuracy before stopping; BN's "
                           "validation accuracy dips for an epoch or two", 0, 1000)
    batch_norm: bool = _hp(False, "BatchNormalization between each linear layer and its ReLU")
    bn_momentum: float = _hp(0.6, "BN moving-statistics momentum: best of 0.99/0.9/0.8/0.6 for a constant rate "
                                  "(experiments/bn_inference.py); 0.99 lags at ~33 steps/epoch. The searches take 0.9: "
                                  "at the rates near 0 of the grid's cosine schedule, 0.6's statistics still swing; "
                                  "random and Bayesian search were measured with it", 0, 1,
                             high_open=True, scale="1-log")
    augment: bool = _hp(False, "random flips and small rotations of training images")

    def __post_init__(self):
        problems = [p for p in (_out_of_range(f, getattr(self, f.name)) for f in fields(self)) if p]
        if self.optimizer not in OPTIMIZERS:
            problems.append(f"optimizer must be one of {', '.join(OPTIMIZERS)}, got {self.optimizer!r}")
        if self.schedule not in SCHEDULES:
            problems.append(f"schedule must be one of {', '.join(SCHEDULES)}, got {self.schedule!r}")
        elif self.schedule == "cosine" and self.decay:
            problems.append(f"decay belongs to the inverse-time schedule; cosine decays to 0 by itself, "
                            f"give decay 0 (got {self.decay:g})")
        if problems:
            raise UsageError("; ".join(problems))

    def to_dict(self):
        return dataclasses.asdict(self)


HPARAM_NAMES = tuple(f.name for f in fields(HParams))
_FIELDS = {f.name: f for f in fields(HParams)}


def _out_of_range(f, value):
    """Why `value` is no value of numeric field `f`, or None."""
    meta, name = f.metadata, f.name
    if meta.get("low") is None:
        return None
    low, high, low_open, high_open = meta["low"], meta["high"], meta["low_open"], meta["high_open"]
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return f"{name} must be a number, got {value!r}"
    if not math.isfinite(value):
        return f"{name} must be a finite number, got {value}"
    if f.type is int and value != int(value):
        return f"{name} must be an integer, got {value}"
    if high_open and not low_open:  # [low, high): the betas and momenta
        return None if low <= value < high else f"{name} must be in {describe_range(name)}, got {value}"
    what = "an integer " if f.type is int else ""
    if value < low or (low_open and value == low):
        return f"{name} must be {what}{'>' if low_open else '>='} {low:g}, got {value}"
    if value > high or (high_open and value == high):
        return f"{name} must be {what}{'<' if high_open else '<='} {high:g}, got {value}"
    return None


def hparam_type(name):
    return _FIELDS[name].type


def scale(name):
    """The scale a search samples a range of field `name` on (SCALES), None for text and switches."""
    return _FIELDS[name].metadata["scale"]


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
        if kind is str:
            return str(text).strip()  # as the tuning scripts read ' cosine'
        number = float(text)
        if not math.isfinite(number):
            raise UsageError(f"{flag(name)}: expected a finite number, got {text!r}")
        if kind is int:
            if number != int(number):
                raise ValueError
            return int(number)
        return number
    except ValueError:
        raise UsageError(f"{flag(name)}: expected {kind.__name__}, got {text!r}") from None
