"""The trial store: `results.csv` in the search's folder, one row per finished training,
appended and never rewritten. It is the one source of every result: the progress lines, the
ranked table, resume, the plots and the final model all read it.

Beside it: `histories.jsonl`, each training's per-epoch curves (one JSON line per trial number,
appended right before its row, the last line of a number winning; --tensorboard and the BN studies read them); `search.json`, the
manifest that says which search the folder holds (tuning.manifest).
"""

import contextlib
import csv
import hashlib
import io
import json
import math
import os
import shutil
import socket
import sys
from dataclasses import dataclass

import numpy as np

from .. import checkpoint, outputs
from ..hparams import UsageError
from .space import coerce, plain

RESULTS, MANIFEST, BEST, MODEL = "results.csv", "search.json", "best.json", "model.keras"
HISTORIES, BOARD, STATES = "histories.jsonl", "tensorboard", "checkpoints"

# A trial's status. "diverged" (the loss became NaN) is a result: that configuration does not
# train. "pruned" (--prune) is one too: it fell behind the finished trials; its row holds its
# epochs and its score so far, which rank it below every finished trial. "failed" (an exception)
# and "timeout" (--trial-timeout) say nothing about the configuration, so --retry-failed trains
# them again.
OK, DIVERGED, PRUNED, FAILED, TIMEOUT = "ok", "diverged", "pruned", "failed", "timeout"
RETRYABLE = (FAILED, TIMEOUT)


def trial_key(params, fold):
    """What identifies one training: the searched values and the fold it was scored on."""
    return tuple(sorted((k, plain(v)) for k, v in params.items())), str(fold)


@dataclass(frozen=True)
class Trial:
    """One configuration's result, over its folds (one fold, "validation", without --cv)."""

    params: dict
    val_accuracy: float     # mean over folds; NaN unless every fold is "ok"
    std: float              # over folds; NaN with one fold
    fit_seconds: float      # mean over folds
    status: str = OK
    message: str = ""
    folds: int = 1
    low: float = math.nan   # min and max over folds (repeats); NaN unless every fold is "ok"
    high: float = math.nan
    kind: str = "validation"  # what the folds are: "validation" (one split), "cv" (K folds), "seeds" (repeats)


class TrialStore:
    """results.csv. Only the process that runs the search appends to it (tuning.evaluate), one
    fsync'd line per training; a partial last line (a crash mid-write) is cut off before the
    next append. The folder's lock (`claim`) keeps every other run out.

    `on_record(number, row, best)` is called after each append (the progress line)."""

    def __init__(self, path, names, on_record=None):
        self.path = str(path)
        self.names = list(names)
        self.on_record = on_record
        self._count = self._best = None  # read from the file at the first append

    @property
    def trained(self):
        """The column of epochs actually trained: "epochs", or "epochs_run" where a search sets
        epochs itself (successive halving: a rung's budget) and "epochs" is a hyperparameter column."""
        return "epochs_run" if "epochs" in self.names else "epochs"

    @property
    def header(self):
        return ["trial", *self.names, "fold", "val_accuracy", self.trained, "fit_seconds", "cpu_seconds",
                "status", "message", "worker"]

    def create(self):
        if not os.path.exists(self.path) or os.path.getsize(self.path) == 0:
            outputs.write_text(self.path, _csv_line(self.header))

    @property
    def histories_path(self):
        return os.path.join(os.path.dirname(self.path), HISTORIES)

    def record(self, params, fold, val_accuracy, fit_seconds, **fields):
        """Appends one training given field by field (`fields`: cpu_seconds, epochs, status,
        message, worker, history); returns its trial number."""
        return self.append({"params": params, "fold": fold, "val_accuracy": val_accuracy,
                            "fit_seconds": fit_seconds, **fields})

    def append(self, row):
        """Appends one finished training (a row as tuning.runner.Outcome.row makes it, and its
        per-epoch `history` where it has one); returns its trial number."""
        row = complete(row, self.names)
        values = [*(row["params"][n] for n in self.names), row["fold"],
                  _number(row["val_accuracy"]), row["epochs"], _number(row["fit_seconds"], 2),
                  _number(row["cpu_seconds"], 2), row["status"], row["message"], row["worker"]]
        with open(self.path, "a+b") as handle:  # bytes: a cut must land on a byte offset
            handle.seek(0, os.SEEK_END)
            if handle.tell():
                handle.seek(-1, os.SEEK_END)
                if handle.read(1) != b"\n":  # a crash mid-write: the partial line is cut, rows counted again
                    self._count = None
            if self._count is None:  # what the file holds, read once
                handle.seek(0)
                data = handle.read()
                if data and not data.endswith(b"\n"):
                    data = data[:data.rfind(b"\n") + 1]
                    handle.truncate(len(data))
                done = self._parse(data.decode("utf-8", errors="replace"))
                self._count = len(done)
                self._best = max((r["val_accuracy"] for r in done if r["status"] == OK), default=None)
            number = self._count + 1
            if row.get("history"):  # first: a row in results.csv means its curve is on disk (--prune reads it back)
                self._append_history(number, row["history"])
            handle.write(_csv_line([number, *values]).encode("utf-8"))
            handle.flush()
            os.fsync(handle.fileno())
        self._count = number
        if row["status"] == OK:
            self._best = max(self._best if self._best is not None else -math.inf, row["val_accuracy"])
        if self.on_record is not None:
            self.on_record(number, row, self._best)
        return number

    def rows(self):
        """Every row, typed: hyperparameters as HParams types, numbers as floats."""
        if not os.path.exists(self.path):
            return []
        try:
            with open(self.path, encoding="utf-8", errors="replace") as handle:
                text = handle.read()
        except OSError as err:
            raise UsageError(f"{self.path} cannot be read ({err.strerror or err}); fix that or choose "
                             "another --out") from None
        rows = self._parse(text)
        for row in rows:
            row["params"] = {n: coerce(n, v) for n, v in row["params"].items()}
        return rows

    def _parse(self, text):
        try:
            return _parse_rows(text, self.header, self.names, self.trained)
        except ValueError as err:
            raise UsageError(f"{self.path}: {err}; move the file away or pass --overwrite") from None

    def _append_history(self, number, history):
        """One line of histories.jsonl, best effort: the row is the result, its curves are not
        worth a search (a failure is one warning line). A line cut by a crash is cut off first."""
        line = (json.dumps({"trial": number, "history": history}, allow_nan=True) + "\n").encode("utf-8")
        try:
            with open(self.histories_path, "a+b") as handle:
                handle.seek(0, os.SEEK_END)
                if handle.tell():
                    handle.seek(-1, os.SEEK_END)
                    if handle.read(1) != b"\n":
                        handle.seek(0)
                        data = handle.read()
                        handle.truncate(data.rfind(b"\n") + 1)
                handle.write(line)
                handle.flush()
                os.fsync(handle.fileno())
        except OSError as err:
            print(f"warning: {self.histories_path}: trial {number}'s curves not kept ({err.strerror or err})",
                  file=sys.stderr, flush=True)

    def histories(self):
        """{trial number: per-epoch history} from histories.jsonl (a line cut by a crash is skipped)."""
        found = {}
        with contextlib.suppress(FileNotFoundError), open(self.histories_path, encoding="utf-8",
                                                          errors="replace") as handle:
            for line in handle:
                try:
                    entry = json.loads(line)
                    found[int(entry["trial"])] = entry["history"]
                except (ValueError, KeyError, TypeError):
                    continue
        return found

    # --- continuing halving's saved training states: checkpoints/<key>.npz, one per training ---

    @property
    def states_path(self):
        return os.path.join(os.path.dirname(self.path), STATES)

    def _state_file(self, key):
        return os.path.join(self.states_path, hashlib.sha1(repr(key).encode()).hexdigest()[:20] + ".npz")

    def save_state(self, key, state):
        """Writes the end state of training `key` (a checkpoint.State), whole or not at all."""
        os.makedirs(self.states_path, exist_ok=True)
        outputs.write_bytes(self._state_file(key), state.to_bytes())

    def load_state(self, key):
        """The saved state of training `key`, or None (never saved, removed, or unreadable: a
        file cut short or spoilt by hand, which the training then replaces by starting over)."""
        try:
            with open(self._state_file(key), "rb") as handle:
                return checkpoint.State.from_bytes(handle.read())
        except FileNotFoundError:
            return None
        except Exception:  # noqa: BLE001 - np.load raises BadZipFile, EOFError, ValueError, ...
            return None

    def drop_states(self, keys=None):
        """Removes the saved states of `keys`; with None the whole folder (a write cut short by
        a kill leaves a temporary file there too)."""
        if keys is None:
            shutil.rmtree(self.states_path, ignore_errors=True)
            return
        for key in keys:
            with contextlib.suppress(FileNotFoundError):
                os.remove(self._state_file(key))

    def latest(self):
        """{trial key: row}, the last row of each training (a retried trial's new row wins)."""
        return latest_by_key(self.rows())

    def trials(self):
        """One Trial per configuration, in order of first appearance."""
        return trials_of(self.rows())


def trials_of(rows):
    """One Trial per configuration of `rows` (each fold's last row), in order of first appearance."""
    by_params = {}
    for (params_key, _), row in latest_by_key(rows).items():
        by_params.setdefault(params_key, []).append(row)
    return [_aggregate(dict(k), group) for k, group in by_params.items()]


def stored(path):
    """The TrialStore of an existing results.csv, its hyperparameter columns read from its header
    (a search run by another command: the studies read their grid searches this way)."""
    try:
        with open(path, encoding="utf-8") as handle:
            header = next(csv.reader(handle), [])
    except OSError as err:
        raise UsageError(f"{path} cannot be read ({err.strerror or err})") from None
    if header[:1] != ["trial"] or "fold" not in header:
        raise UsageError(f"{path}: not a search's results.csv (its header is {','.join(header) or 'empty'})")
    return TrialStore(path, header[1:header.index("fold")])


def _aggregate(params, rows):
    scores = [r["val_accuracy"] for r in rows]
    fits = float(np.mean([r["fit_seconds"] for r in rows]))
    fold = rows[0]["fold"]
    kind = "cv" if fold.startswith("cv") else "seeds" if fold.startswith("seed") else "validation"
    bad = next((r for r in rows if r["status"] != OK), None)
    if bad is not None:
        return Trial(params, float("nan"), float("nan"), fits, bad["status"], bad["message"], len(rows), kind=kind)
    std = float(np.std(scores)) if len(scores) > 1 else float("nan")
    return Trial(params, float(np.mean(scores)), std, fits, OK, "", len(rows), float(min(scores)), float(max(scores)),
                 kind)


def rank(trials, rung=None):
    """Best first; trials without a score last. With `rung` (the hyperparameter a successive-
    halving rung sets, "epochs"), the highest rung first: a score after 3 epochs does not
    compete with one after 27 (scikit-learn's halving picks its best in the last rung too)."""
    def key(t):
        score = -t.val_accuracy if math.isfinite(t.val_accuracy) else math.inf
        return (-t.params[rung], score) if rung else score

    return sorted(trials, key=key)


def _number(value, digits=None):
    """`digits` decimals, or every digit (scores: a resumed Bayesian search tells the optimizer
    exactly the value it was told the first time)."""
    if not math.isfinite(value):
        return "nan"
    return repr(float(value)) if digits is None else f"{value:.{digits}f}"


def complete(row, names):
    """A row with every field, typed, its message on one line of at most 300 characters."""
    row = {"epochs": 0, "cpu_seconds": float("nan"), "status": OK, "message": "",
           "worker": f"{socket.gethostname()}:{os.getpid()}", **row}
    done = {"params": {n: plain(row["params"][n]) for n in names}, "fold": str(row["fold"]),
            "val_accuracy": float(row["val_accuracy"]), "epochs": int(row["epochs"]),
            "fit_seconds": float(row["fit_seconds"]), "cpu_seconds": float(row["cpu_seconds"]),
            "status": row["status"], "message": " ".join(str(row["message"]).split())[:300],
            "worker": row["worker"] or f"{socket.gethostname()}:{os.getpid()}"}
    if row.get("history"):
        done["history"] = {k: [float(v) for v in values] for k, values in row["history"].items()}
    return done


def _csv_line(values):
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerow(values)
    return buffer.getvalue()


def _parse_rows(text, header, names, trained="epochs"):
    """Typed rows of results.csv; ValueError names the first line that is not a row."""
    lines = text.splitlines(keepends=True)
    if lines and not lines[-1].endswith("\n"):
        lines = lines[:-1]  # a partial last line is not a row
    if not lines:
        return []
    reader = csv.DictReader(lines)
    if reader.fieldnames[:len(header)] != header:
        raise ValueError(f"the header is not {','.join(header)}")
    rows = []
    for number, row in enumerate(reader, 2):
        try:
            for name in ("val_accuracy", "fit_seconds", "cpu_seconds"):
                row[name] = float(row[name])
            row["params"] = {n: row[n] for n in names}  # text; rows() types them
            row["epochs"] = int(row[trained])
            if row["status"] not in (OK, DIVERGED, PRUNED, FAILED, TIMEOUT) or None in row.values():
                raise ValueError
        except (TypeError, ValueError):
            raise ValueError(f"line {number} is not a row of this search") from None
        rows.append(row)
    return rows


def latest_by_key(rows):
    """{trial key: row} of typed rows, the last row of each key winning."""
    return {trial_key(r["params"], r["fold"]): r for r in rows}


