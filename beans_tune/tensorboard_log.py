"""TensorBoard event files (--tensorboard): epoch curves of a training, and a search as an
experiment of the HParams dashboard, one session per training.

    tensorboard --logdir runs/tune_random-.../tensorboard --host 127.0.0.1

Events are written from what the project already keeps (a training's per-epoch history, the
trial store's rows), after the fact, by the process that holds them: a trial trained in another
process or on a Dask worker sends its history back with its row, so every file is written on
the machine that started the search.

Layout under OUT/tensorboard/: the experiment's config in the folder itself, and one run folder
per training (trial-0001, ...: hyperparameters, curves, final score and status) or per model of
a training script (bn, baseline). A run folder is written whole in OUT/.tensorboard-staging/
(outside the folder TensorBoard reads) and then renamed into place, so an interrupted write
leaves no half session (the next sync clears what it left), and a resumed search writes only
the trainings that have no folder yet.
"""

import contextlib
import math
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from . import outputs

# The searches' score, written once per session (step = epochs trained): the metric of the
# HParams dashboard. Per-epoch curves use Keras's names (loss, accuracy, val_loss, val_accuracy, lr).
SCORE = "score/val_accuracy"
FOLDER = "tensorboard"
STAGING = ".tensorboard-staging"  # beside FOLDER, not in it: TensorBoard reads hidden folders too


def guarded(prog, write):
    """TensorBoard files never cost a run its results: a failure is a warning line (a search's
    next sync writes what is missing)."""
    try:
        write()
    except Exception as err:  # noqa: BLE001
        print(f"{prog}: warning: TensorBoard events not written ({err.__class__.__name__}: {err})",
              file=sys.stderr, flush=True)


def _tf():
    import tensorflow as tf

    return tf


def staging_root(logdir):
    return Path(logdir).parent / STAGING


def clear_staging(logdir):
    """Removes what interrupted writes left (call it where no other write is under way)."""
    shutil.rmtree(staging_root(logdir), ignore_errors=True)


def _write_run(folder, write):
    """Calls write() with a summary writer on a staging folder, then renames it to `folder`."""
    tf = _tf()
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    root = staging_root(folder.parent)
    root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f"{folder.name}-", dir=root))
    try:
        writer = tf.summary.create_file_writer(str(staging))
        with writer.as_default():
            write()
        writer.close()
        os.chmod(staging, 0o777 & ~outputs.umask())  # mkdtemp's 0700 would hide it from other users
        os.replace(staging, folder)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        with contextlib.suppress(OSError):
            root.rmdir()  # only when empty


def _curves(history):
    tf = _tf()
    for name, values in history.items():
        for epoch, value in enumerate(values, 1):
            if value is not None and math.isfinite(value):
                tf.summary.scalar(name, value, step=epoch)


def write_curves(folder, history):
    """One training's per-epoch curves (common.TrainResult.history) as run `folder`."""
    if Path(folder).exists():
        shutil.rmtree(folder)  # this model's previous curves in the same --out
    _write_run(folder, lambda: _curves(history))


def domain(dim):
    """The HParams dashboard's domain of a searched hyperparameter (tuning.space.Dim)."""
    from tensorboard.plugins.hparams import api as hp

    if dim.is_range and dim.is_int and dim.scale != "pow2":  # units 32:256: an interval, not 225 checkboxes
        return hp.IntInterval(int(dim.low), int(dim.high))
    values = dim.values()
    if values is not None:  # choices, powers of two
        return hp.Discrete(values)
    return hp.RealInterval(float(dim.low), float(dim.high))


def write_experiment(logdir, dims, extra=()):
    """The experiment: the searched hyperparameters with their domains (plus `extra` names
    without one, such as a halving rung's epochs) and the score as its metric."""
    from tensorboard.plugins.hparams import api as hp

    tf = _tf()
    logdir = Path(logdir)
    if any(logdir.glob("events.out.tfevents.*")):
        return  # a resumed search: the same experiment (search.json matched)
    hparams = [hp.HParam(d.name, domain(d)) for d in dims] + [hp.HParam(name) for name in extra]
    metrics = [hp.Metric(SCORE, display_name="validation accuracy (the search's score)"),
               hp.Metric("val_accuracy", display_name="val_accuracy (last epoch)"),
               hp.Metric("loss", display_name="training loss (last epoch)")]
    logdir.mkdir(parents=True, exist_ok=True)
    writer = tf.summary.create_file_writer(str(logdir))
    with writer.as_default():
        hp.hparams_config(hparams=hparams, metrics=metrics)
    writer.close()


# The dashboard knows success and failure: a diverged, failed or timed-out trial is a failure
# there (results.csv says which).
STATUSES = {"ok": "STATUS_SUCCESS", "diverged": "STATUS_FAILURE", "failed": "STATUS_FAILURE",
            "timeout": "STATUS_FAILURE"}


def session_name(number):
    return f"trial-{int(number):04d}"


def write_session(logdir, number, row, history=None):
    """One training of a search (a row of results.csv, trial `number`) as a session."""
    from tensorboard.plugins.hparams import api as hp
    from tensorboard.plugins.hparams import api_pb2, summary

    tf = _tf()
    folder = Path(logdir) / session_name(number)
    if folder.exists():
        return False
    params = {k: (v.item() if hasattr(v, "item") else v) for k, v in row["params"].items()}
    group = ",".join(f"{k}={params[k]!r}" for k in sorted(params))  # a configuration's folds: one group
    if row["status"] != "ok":  # a failed attempt is not averaged into its configuration's group (--retry-failed)
        group += f" ({session_name(number)}, {row['status']})"

    def write():
        hp.hparams(params, trial_id=group)
        _curves(history or {})
        if row["status"] == "ok" and math.isfinite(row["val_accuracy"]):
            tf.summary.scalar(SCORE, row["val_accuracy"], step=max(int(row["epochs"]), 1))
        end = summary.session_end_pb(api_pb2.Status.Value(STATUSES.get(row["status"], "STATUS_UNKNOWN")))
        tf.summary.experimental.write_raw_pb(end.SerializeToString(), step=0)

    _write_run(folder, write)
    return True


def write_search(logdir, dims, extra, rows, histories):
    """Every training of `rows` (results.csv, in order: row i is trial i + 1) that has no session
    yet; `histories` maps trial numbers to per-epoch histories. Returns how many were written."""
    clear_staging(logdir)
    write_experiment(logdir, dims, extra)
    return sum(write_session(logdir, number, row, histories.get(number))
               for number, row in enumerate(rows, 1))


@dataclass(frozen=True)
class Board:
    """A search as an HParams experiment under `folder`, kept up to date as its trainings finish."""

    prog: str
    folder: Path
    dims: tuple
    extra: list

    def sync(self, trial_store):
        """Writes the experiment and a session for every stored training that has none yet."""
        guarded(self.prog, lambda: write_search(
            self.folder, self.dims, self.extra, trial_store.rows(), trial_store.histories()))

    def follow(self, progress):
        """An on_record callback: the progress line, then the new training's session."""
        return lambda number, row, best: (progress(number, row, best), guarded(
            self.prog, lambda: write_session(self.folder, number, row, row.get("history"))))

    def curves(self, name, history):
        """A run of epoch curves (the final model's)."""
        guarded(self.prog, lambda: write_curves(self.folder / name, history))
