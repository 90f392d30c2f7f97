"""The search space: one `Dim` per searched hyperparameter, parsed from a flag ('lo:hi' range,
'a,b,c' choices), sampled on its natural scale, in scikit-learn's and scikit-optimize's terms.

    python tune_random.py --learning-rate 1e-5:1e-1 --units 16:256 --batch-size 16:128
"""

import math
from dataclasses import dataclass

import numpy as np

from ..hparams import HPARAM_NAMES, SCALES, HParams, UsageError, flag, hparam_type, parse_value
from ..hparams import scale as field_scale

# What every trial gets unless a flag says otherwise: the BN model (the course project: add BN,
# then tune it; --batch-norm false tunes the baseline), trained as the accuracy recipe trains,
# shortened (its worth on resplits: docs/accuracy.md): each image mirrored, flipped and turned
# at random (augment), a cosine schedule run to its end (patience = epochs: early stopping would
# cut it short of its low rates; random and Bayesian search replace it, DEFAULT_RANGES), BN
# momentum 0.9 (0.6's moving statistics follow the last two or three batches and still swung at
# the cosine's rates near 0; random and Bayesian search were measured with it, and kept it).
# 20 epochs rank configurations (an augmented epoch takes 5-8 s on the 2-core machine: the
# default grid took 20 min 30 s alone); the model kept trains for FINAL_EPOCHS
# (tuning.run.final_budget; --final-epochs).
TRIAL_DEFAULTS = {"batch_norm": True, "augment": True, "schedule": "cosine", "bn_momentum": 0.9,
                  "epochs": 20, "patience": 20}
FINAL_EPOCHS = 60
# Ranges for random and Bayesian search (lo:hi), chosen for the BN model from two measured
# searches (docs/accuracy.md, "Searches with defaults"): learning rates above 1e-2 and batches of 128
# scored 0.80-0.86 against the best 0.93; one conv block won only through a tie, then tested
# 0.75. They search the lecture's five (learning rate, layers, units, decay, batch size): the
# lecture's decay, lr / (1 + decay * epoch), is the inverse-time schedule; against the cosine
# schedule (no decay to search) it showed no measurable cost on three paired fresh resplits
# (median difference -0.0078, range [-0.0234, +0.0547]; docs/accuracy.md, "The default space").
# With --schedule cosine the decay range gives way (build_space).
DEFAULT_RANGES = {
    **TRIAL_DEFAULTS,
    "schedule": "inverse-time",
    "learning_rate": "3e-4:1e-2",
    "decay": "1e-3:1e-1",
    "layers": "2:4",
    "units": "32:256",
    "batch_size": "16:64",
}


@dataclass(frozen=True)
class Space:
    """A method's space before the user's flags: {name: spec}, and the names that a file the user
    gave sets (tune_grid.py --grid), which count as set by the user, as flags do."""

    values: dict
    given: frozenset = frozenset()


# how --help and the search's configuration name each scale (hparams.SCALES)
SCALE_WORDS = {"log": "log-uniform", "1-log": "1-x log-uniform", "pow2": "over powers of two", "linear": "uniform"}


def fmt(value):
    """A hyperparameter value as the tables print it (4 significant figures)."""
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value))
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        return f"{value:.4g}"
    return str(value)


def plain(value):
    """numpy scalars (as samplers return them) to Python values."""
    return value.item() if isinstance(value, np.generic) else value


def powers_of_two(low, high):
    return [2 ** k for k in range(0, 16) if low <= 2 ** k <= high]


@dataclass(frozen=True)
class Dim:
    """One searched hyperparameter: a range (low, high) or a list of choices, and the scale a
    range is sampled on (hparams.SCALES): the field's own unless the flag chose one."""

    name: str
    low: float = None
    high: float = None
    choices: tuple = None
    scale: str = None

    def __post_init__(self):
        if self.scale is None:
            object.__setattr__(self, "scale", field_scale(self.name) or "linear")

    @property
    def is_range(self):
        return self.choices is None

    @property
    def is_int(self):
        return hparam_type(self.name) is int

    def values(self):
        """Every value of a finite dimension (a list, powers of two, an integer range), else None."""
        if not self.is_range:
            return list(self.choices)
        if self.scale == "pow2":
            return powers_of_two(self.low, self.high)
        return list(range(int(self.low), int(self.high) + 1)) if self.is_int else None

    def middle(self):
        """The median of what is sampled: the value of this dimension that a time estimate trains."""
        if self.is_range and self.scale in ("log", "1-log"):
            flip = self.scale == "1-log"
            low, high = (1 - self.low, 1 - self.high) if flip else (self.low, self.high)
            value = math.sqrt(low * high)
            return (1 - value) if flip else round(value) if self.is_int else value
        values = self.values()
        if values is not None:
            return sorted(values)[len(values) // 2]
        return (self.low + self.high) / 2

    def spec(self):
        """Exact, JSON-safe description: what identifies this dimension of a search on resume."""
        if not self.is_range:
            return {"choices": [plain(v) for v in self.choices]}
        return {"low": self.low, "high": self.high, "scale": self.scale}

    def describe(self, words=SCALE_WORDS):
        """As the search prints it before it starts: a list, or a range and its distribution."""
        if not self.is_range:
            return "{" + ", ".join(fmt(v) for v in self.choices) + "}"
        if self.scale == "pow2":
            return "{" + ", ".join(str(v) for v in powers_of_two(self.low, self.high)) + "}"
        scale = words[self.scale]
        return f"{fmt(self.low)}:{fmt(self.high)} {scale}{' int' if self.is_int else ''}"

    def scipy(self):
        """A distribution (or list) for scikit-learn's ParameterSampler."""
        from scipy import stats

        if not self.is_range:
            return list(self.choices)
        if self.scale == "pow2":
            return powers_of_two(self.low, self.high)
        if self.scale == "log":
            return IntLogUniform(self.low, self.high) if self.is_int else stats.loguniform(self.low, self.high)
        if self.scale == "1-log":
            return OneMinusLogUniform(self.low, self.high)
        if self.is_int:
            return stats.randint(int(self.low), int(self.high) + 1)
        return stats.uniform(self.low, self.high - self.low)

    def skopt(self):
        """The same dimension in scikit-optimize's terms."""
        from skopt.space import Categorical, Integer, Real

        if not self.is_range:
            return Categorical(list(self.choices), name=self.name)
        if self.scale == "pow2":
            return Categorical(powers_of_two(self.low, self.high), name=self.name)
        if self.scale == "1-log":
            # skopt has no 1-x prior; search x directly (the GP models it fine over a narrow range)
            return Real(self.low, self.high, name=self.name)
        prior = "log-uniform" if self.scale == "log" else "uniform"
        if self.is_int:
            return Integer(int(self.low), int(self.high), prior=prior, name=self.name)
        return Real(self.low, self.high, prior=prior, name=self.name)

    def narrowed(self, values, pad=0.1):
        """Coarse to fine: the span of `values` (the top trials' settings), padded by `pad` of
        that span on each side in the sampling space, never beyond the current range."""
        if not self.is_range or not values:
            return self
        if self.scale == "pow2":
            return Dim(self.name, min(values), max(values), scale=self.scale)
        forward, back = _TRANSFORMS[self.scale]
        lo, hi = forward(min(values)), forward(max(values))
        if self.scale == "1-log":
            lo, hi = hi, lo  # 1 - x reverses the order
        span = (hi - lo) or abs(hi) * 0.1 or 0.1
        new = sorted((back(lo - pad * span), back(hi + pad * span)))
        low, high = max(self.low, new[0]), min(self.high, new[1])
        if self.is_int:
            low, high = math.floor(low), math.ceil(high)
        if low >= high:
            return Dim(self.name, choices=(type(self.low)(low),))
        return Dim(self.name, low, high, scale=self.scale)


_TRANSFORMS = {
    "log": (math.log10, lambda v: 10 ** v),
    "1-log": (lambda v: math.log10(1 - v), lambda v: 1 - 10 ** v),
    "linear": (float, float),
}


class IntLogUniform:
    """Integers whose logarithm is uniform over [log low, log high] (e.g. hidden units)."""

    def __init__(self, low, high):
        self.low, self.high = int(low), int(high)

    def rvs(self, size=None, random_state=None):
        from scipy import stats

        # sample over [low - 0.5, high + 0.5) so both end integers get their share after rounding
        x = stats.loguniform(self.low - 0.5 if self.low > 1 else 1, self.high + 0.5).rvs(
            size=size, random_state=random_state)
        return np.clip(np.round(x), self.low, self.high).astype(int)


class OneMinusLogUniform:
    """b with log(1 - b) uniform: as many samples in 0.9..0.99 as in 0.99..0.999."""

    def __init__(self, low, high):
        self.low, self.high = low, high

    def rvs(self, size=None, random_state=None):
        from scipy import stats

        return 1 - stats.loguniform(1 - self.high, 1 - self.low).rvs(size=size, random_state=random_state)


def parse_dim(name, text, allow_range=True):
    """'lo:hi' -> range; 'a,b,c' -> choices; 'a' -> one choice (fixed)."""
    text = str(text).strip()
    if ":" in text:
        if not allow_range:
            raise UsageError(f"{flag(name)}: a grid takes a comma list of values, not a range ({text!r})")
        if hparam_type(name) in (bool, str):
            raise UsageError(f"{flag(name)}: {name} takes a comma list, not a range")
        parts = [p.strip() for p in text.split(":")]
        if len(parts) not in (2, 3) or not all(parts):
            raise UsageError(f"{flag(name)}: expected lo:hi or lo:hi:scale, got {text!r}")
        scale = parts[2].lower() if len(parts) == 3 else field_scale(name)
        allowed = [s for s in SCALES if s != "pow2" or hparam_type(name) is int]
        if scale not in allowed:
            what = "pow2 is for integer hyperparameters" if scale in SCALES else f"unknown scale {parts[2]!r}"
            raise UsageError(f"{flag(name)}: {what}, in {text!r} (one of {', '.join(allowed)})")
        low, high = (parse_value(name, p) for p in parts[:2])
        if not low < high:
            raise UsageError(f"{flag(name)}: low must be below high, got {text!r}")
        if scale == "log" and (low <= 0 or low * high == 0):  # a product that underflows: skopt's own check
            raise UsageError(f"{flag(name)}: a log-uniform range needs bounds > 0, got {text!r}")
        if scale == "1-log" and not (0 <= low and high < 1):
            raise UsageError(f"{flag(name)}: a 1-log range needs 0 <= lo and hi < 1, got {text!r}")
        if scale == "pow2" and not powers_of_two(low, high):
            raise UsageError(f"{flag(name)}: no power of two in {text!r}")
        for bound in (low, high):
            _check_value(name, bound)
        return Dim(name, low, high, scale=scale)
    items = [t.strip() for t in text.split(",")]
    if not text or any(not t for t in items):
        raise UsageError(f"{flag(name)}: empty value in list {text!r}")
    values = tuple(dict.fromkeys(parse_value(name, t) for t in items))
    for value in values:
        _check_value(name, value)
    return Dim(name, choices=values)


def _check_value(name, value):
    """An impossible value (lr <= 0, beta >= 1, ...) is refused by HParams itself."""
    try:
        HParams(**{name: value})
    except UsageError as err:
        raise UsageError(f"{flag(name)}: {err}") from None


def build_space(defaults, overrides, allow_range, given=frozenset()):
    """Merges a method's default space with the user's flags (`overrides`); `given` names the
    defaults that a file the user gave set (tune_grid.py --grid), asked for as flags are.

    Returns (dims, fixed): a flag with one value fixes that hyperparameter for every trial."""
    texts = dict(defaults)
    texts.update(overrides)
    schedules = texts.get("schedule", "")
    if isinstance(schedules, str):
        schedules = schedules.split(",")
    if "cosine" in (str(v).strip() for v in schedules):
        # cosine takes no decay: a default decay range gives way; one the user asked for is refused
        if "decay" not in overrides and "decay" not in given:
            texts["decay"] = "0"
        elif parse_dim("decay", spec_text(texts["decay"]), allow_range) != Dim("decay", choices=(0.0,)):
            if "decay" in overrides:
                raise UsageError("--decay belongs to --schedule inverse-time; with cosine in --schedule, "
                                 "leave --decay out (cosine decays to 0 by itself)")
            raise UsageError("--grid: decay belongs to the inverse-time schedule; with cosine among the "
                             "schedules, leave decay out of the grid file (cosine decays to 0 by itself)")
    dims, fixed = [], {}
    for name, text in texts.items():
        if name not in HPARAM_NAMES:
            raise UsageError(f"unknown hyperparameter {name!r} (known: {', '.join(HPARAM_NAMES)})")
        if isinstance(text, (list, tuple)) and not text:
            raise UsageError(f"{flag(name)}: empty list")
        dim = parse_dim(name, spec_text(text), allow_range)
        if dim.is_range and dim.scale == "pow2" and len(powers_of_two(dim.low, dim.high)) == 1:
            dim = Dim(name, choices=tuple(powers_of_two(dim.low, dim.high)))  # e.g. 20:40 is 32
        if not dim.is_range and len(dim.choices) == 1:
            fixed[name] = dim.choices[0]
        else:
            dims.append(dim)
    return dims, fixed


def spec_text(spec):
    """A spec as a flag gives it: a list (of a grid file) as a comma list."""
    return ",".join(str(v) for v in spec) if isinstance(spec, (list, tuple)) else spec


def coerce(name, text):
    """A results.csv cell back to the hyperparameter's type."""
    return parse_value(name, text) if text != "" else text
