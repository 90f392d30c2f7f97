"""A tuning script's flags: the run flags every script has (cli.add_run_flags), the search
settings below (one field, one flag), the method's own flags, and one flag per hyperparameter
(HParams). `SearchSettings` is the one place each setting's default, range, help and checks live.
"""

from dataclasses import dataclass, field, fields

from .. import cli
from ..hparams import HPARAM_NAMES, HParams, UsageError, describe_range
from ..hparams import scale as field_scale
from .execution import CONNECT_TIMEOUT
from .final import AUTO, FINAL_DATA, TRAIN_AND_VALIDATION
from .pruning import STARTUP_TRIALS, WARMUP_EPOCHS
from .space import FINAL_EPOCHS, TRIAL_DEFAULTS


def _lower(text):
    return text.strip().lower()


def _setting(default, help, parse=None, metavar=None, choices=None):
    """A search setting: its flag's default, parser (None: a switch when the default is False,
    else text), metavar, choices and help."""
    return field(default=default, metadata={"help": help, "parse": parse, "metavar": metavar, "choices": choices})


@dataclass(frozen=True)
class SearchSettings:
    """How a search runs and what it does at the end, besides what it searches. Checked as made."""

    n_jobs: int = _setting(1, "trials run in N processes (default: 1, range [1, 64])", cli.number(int, 1, 64))
    top: int = _setting(10, "rows in the ranked table (default: 10)", cli.number(int, 1, 10**4))
    trial_timeout: float = _setting(
        None, "stop a trial running longer and record it as 'timeout' (default: none, range (0, 1e6])",
        cli.number(float, 0, 10**6, low_open=True), "SECONDS")
    retry_failed: bool = _setting(
        False, "on resume, train failed and timed-out trials again (diverged ones are results)")
    scheduler: str = _setting(
        None, "run the trials on an existing Dask cluster, e.g. tcp://127.0.0.1:8786; a tls:// one takes its "
              "certificates from Dask's configuration (see docs/dask.md)",
        metavar="ADDRESS")
    connect_timeout: float = _setting(
        None, "with --scheduler: how long to wait for a worker, at start and whenever the cluster has none "
              f"(default: {CONNECT_TIMEOUT})", cli.number(float, 1, 3600), "SECONDS")
    threads_per_trial: int = _setting(
        None, "TensorFlow threads per trial (default: cores / n-jobs for local processes; TensorFlow's own "
              "choice otherwise)", cli.number(int, 1, 256), "N")
    final_epochs: int = _setting(
        None, f"train the best configuration for up to N epochs at the end (default: {FINAL_EPOCHS}, unless "
              "--epochs is given); trials only rank configurations, the final model trains longer",
        cli.number(int, 1, 1000), "N")
    final_patience: int = _setting(
        None, "the final model's patience, on the train split (default: --patience where given, else 20; with "
              "the cosine schedule, unless --patience is given, its epochs: the schedule runs to its end)",
        cli.number(int, 0, 1000), "P")
    final_data: str = _setting(
        AUTO, "what the final model trains on: train, the best epoch on validation kept; train+validation, the "
              "validation images too, all its epochs, the last kept (the search ranks configurations as without "
              "it); or auto (default): train+validation for a cosine schedule run to its end, train otherwise; "
              "any case", _lower, choices=FINAL_DATA)
    prune: bool = _setting(
        False, f"stop a trial that falls behind: after its epoch {WARMUP_EPOCHS}, at the end of any epoch where its "
               "best validation accuracy is below the median of the finished trials' at that epoch, once "
               f"{STARTUP_TRIALS} have finished (Optuna's MedianPruner rule); stored as 'pruned' with its score "
               "so far")
    overwrite: bool = _setting(False, "start afresh, whatever the --out folder holds")

    def __post_init__(self):
        if not self.scheduler and self.connect_timeout is not None:
            raise UsageError("--connect-timeout goes with --scheduler")
        if self.final_data == TRAIN_AND_VALIDATION and self.final_patience is not None:
            raise UsageError("--final-patience has nothing to stop on with --final-data train+validation: "
                             "the final model trains all --final-epochs")

    @classmethod
    def from_args(cls, args):
        return cls(**{f.name: getattr(args, f.name) for f in fields(cls)})

    @staticmethod
    def add_flags(parser):
        for f in fields(SearchSettings):
            meta = f.metadata
            if f.default is False:
                parser.add_argument(cli.flag(f.name), action="store_true", help=meta["help"])
                continue
            extra = {"type": meta["parse"]} if meta["parse"] else {}
            parser.add_argument(cli.flag(f.name), default=f.default, metavar=meta["metavar"],
                                choices=meta["choices"], help=meta["help"], **extra)


def parser_for(method):
    """The whole parser of a tuning script."""
    parser = cli.ArgumentParser(prog=f"{method.script}.py", description=method.description)
    cli.add_run_flags(parser)
    SearchSettings.add_flags(parser)
    method.add_flags(parser)
    group = parser.add_argument_group(
        "hyperparameters", "each takes one value (fixed), a comma list (choices)"
        + (", or lo:hi (a range, sampled on the scale each flag names; lo:hi:linear, lo:hi:log, lo:hi:1-log or "
           "lo:hi:pow2 chooses another)" if method.allow_range else ""))
    defaults = method.space(None).values
    for name in HPARAM_NAMES:
        shown = defaults.get(name, getattr(HParams(), name))
        shown = str(shown).lower() if isinstance(shown, bool) else shown  # true|false, as it is typed
        if name == "decay" and shown != 0:  # random and Bayesian search's range
            shown = f"{shown}; 0 with --schedule cosine"
        if name == "patience" and shown == TRIAL_DEFAULTS["epochs"]:
            shown = f"{shown}, the trials' epochs: with cosine one --epochs value sets it too"
        span, scale = describe_range(name), method.scale_words.get(field_scale(name))
        more = "".join([f"; range {span}" if span else "", f"; a range is sampled {scale}" if scale and
                        method.allow_range else ""])
        group.add_argument(cli.flag(name), default=None, metavar="SPEC", help=f"default: {shown}{more}")
    return parser
