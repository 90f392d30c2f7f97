"""What a search's --out folder holds besides its trainings, and whether a run may use it:
the lock that keeps a second run out (`claim`), search.json, the manifest compared exactly on
resume (`open_search`), and best.json, whose presence marks a finished search (`read_best`).
"""

import contextlib
import json
import shutil
from pathlib import Path

from .. import outputs
from ..hparams import UsageError
from .store import BEST, BOARD, HISTORIES, MANIFEST, MODEL, RESULTS, STATES, latest_by_key, trials_of

LOCK = ".lock"
# search.json's "format": 3 since the manifest holds only the fixed hyperparameters that differ from
# HParams' defaults and --score is gone (2: trainings build their own seeded model, public Keras
# only). A folder of another format is refused in one line (open_search), not resumed.
FORMAT = 3


@contextlib.contextmanager
def claim(folder):
    """Holds an exclusive lock on `folder` (filelock's, on every platform: its file .lock stays
    in the folder) while the block runs. A folder that this call created is removed again if the
    block fails before anything but the folder and its lock exists, so bad input leaves nothing."""
    import filelock

    with outputs.output_folder(folder) as folder:
        lock = filelock.FileLock(folder / LOCK)
        try:
            lock.acquire(timeout=0)
        except filelock.Timeout:
            raise UsageError(f"{folder} is in use by another run; wait for it to finish or choose "
                             "another --out") from None
        try:
            yield folder
        except BaseException:
            if [p.name for p in folder.iterdir()] == [LOCK]:
                (folder / LOCK).unlink()  # output_folder then removes the folder it made
            raise
        finally:
            lock.release()


def open_search(folder, manifest, overwrite, figures=()):
    """Returns True when `folder` holds this very search (resume), False for a fresh start.

    A folder holding another search, or results of an unknown one, is refused; --overwrite
    clears a previous search's files first (its own files only: `figures` names the figures a
    search writes; nothing else in the folder is touched)."""
    folder = Path(folder)
    # the files a search reads back; curves and figures that cannot be written are a warning
    # (run.draw_figures, store's histories), unless --overwrite is to remove them
    for name in (MANIFEST, RESULTS, BEST, MODEL, *((HISTORIES, *figures) if overwrite else ())):
        if (folder / name).exists() and not (folder / name).is_file():
            raise UsageError(f"{folder / name} is not a file; move it away or choose another --out")
    if overwrite and ((folder / MANIFEST).exists() or (folder / RESULTS).exists()):
        for name in (MANIFEST, RESULTS, HISTORIES, BEST, MODEL, *figures):
            (folder / name).unlink(missing_ok=True)
        for name in (BOARD, f".{BOARD}-staging", STATES):  # a previous halving's saved states too
            shutil.rmtree(folder / name, ignore_errors=True)
    manifest_path, results_path = folder / MANIFEST, folder / RESULTS
    if not manifest_path.exists() and not results_path.exists():
        return False
    try:
        held_manifest = json.loads(manifest_path.read_text())
    except (OSError, json.JSONDecodeError):
        held_manifest = None
    wanted = json.loads(json.dumps(manifest))
    if isinstance(held_manifest, dict) and held_manifest.get("format") != wanted["format"]:
        raise UsageError(f"{folder} holds a search saved by another version of these scripts (format "
                         f"{held_manifest.get('format', 1)!r}, this one writes {wanted['format']!r}), whose trainings "
                         "are not this version's; pass --overwrite to run it afresh, or choose another --out")
    same = held_manifest == wanted
    if same and not results_path.exists() and (folder / BEST).exists():
        raise UsageError(f"{folder} holds this search, finished, but its {RESULTS} is gone; pass --overwrite "
                         "to run the search afresh")
    if same:
        return results_path.exists()
    held = "a different search" if manifest_path.exists() else "results of an unknown search"
    if isinstance(held_manifest, dict):
        differ = [k for k in sorted({*held_manifest, *wanted}) if held_manifest.get(k) != wanted.get(k)]
        held += f" (its {', '.join(differ)} differ)"
    hint = _halving_hint(held_manifest, manifest) or _schedule_hint(held_manifest, wanted)
    if isinstance(held_manifest, dict) and {**held_manifest, "images": None} == {**wanted, "images": None}:
        hint = (f": the images in {manifest.get('data')} changed since it ran (classes, files added, removed or "
                "renamed)")
    raise UsageError(f"{folder} holds {held}{hint}; choose another --out or pass --overwrite")


def _schedule_hint(held, wanted):
    """What to add when the folder's search ran on the cosine schedule that random and Bayesian
    search took by default before 0.4, and this one does not."""
    fixed = held.get("fixed") if isinstance(held, dict) else None
    if (isinstance(fixed, dict) and fixed.get("schedule") == "cosine" and held.get("script") == wanted.get("script")
            and (wanted.get("fixed") or {}).get("schedule") != "cosine" and "schedule" not in wanted.get("space", {})):
        return (": it ran on the cosine schedule (random and Bayesian search's default before 0.4); "
                "add --schedule cosine")
    return ""


def _halving_hint(held, wanted):
    """What to add when the folder's halving search differs from this one only in restarting its rungs."""
    if not isinstance(held, dict) or not isinstance(held.get("method"), dict):
        return ""
    before, now = held["method"].get("halving"), (wanted.get("method") or {}).get("halving")
    if not before or not now or {**held, "method": None} != json.loads(json.dumps({**wanted, "method": None})):
        return ""
    if list(before) == list(now)[:2] and len(before) == 2:
        return ": its halving restarted its rungs, add --restart-rungs to resume it"
    if list(now) == list(before)[:2] and len(now) == 2:
        return ": its halving continued its rungs, leave out --restart-rungs to resume it"
    return ""


def write_manifest(folder, manifest):
    outputs.write_json(Path(folder) / MANIFEST, manifest)


def _count(value, least=0):
    return isinstance(value, int) and not isinstance(value, bool) and value >= least


def _number_or(value, *also):
    return (isinstance(value, (int, float)) and not isinstance(value, bool)) or any(value is a for a in also)


# what a finished search's reprint reads from best.json (format_best, run.show_finished)
BEST_FIELDS = {"val_accuracy": _number_or, "test_accuracy": _number_or,
               "final_val_accuracy": lambda v: _number_or(v, None), "final_epochs": _count,
               "hparams": lambda v: isinstance(v, dict), "final_status": lambda v: isinstance(v, str),
               "final_data": lambda v: isinstance(v, str), "validation_images": lambda v: _count(v, 1),
               "test_images": lambda v: _count(v, 1), "trials": _count, "trainings": _count}


def read_best(folder, trial_store=None):
    """best.json of a finished search, or None. Content that is not a search's summary, or a
    results.csv that no longer holds every training (fold, repeat) and trial best.json counted
    (`trial_store`), is one UsageError: the search cannot call itself finished on results it has
    lost."""
    path = Path(folder) / BEST
    if not path.exists():
        return None
    try:
        summary = json.loads(path.read_text())
    except (OSError, ValueError):
        raise UsageError(f"{path} is not readable JSON; pass --overwrite to run the search afresh") from None
    if not isinstance(summary, dict) or not (
            all(k in summary and ok(summary[k]) for k, ok in BEST_FIELDS.items())):
        raise UsageError(f"{path} is not a finished search's summary; pass --overwrite to run the search afresh")
    if trial_store is not None:
        rows = trial_store.rows()
        # trainings: every fold and repeat
        for what, counted, held in (("trainings", summary["trainings"], len(latest_by_key(rows))),
                                    ("trials", summary["trials"], len(trials_of(rows)))):
            if held < counted:
                raise UsageError(f"{trial_store.path} holds {held} of the {counted} {what} {path.name} counts: "
                                 "results were lost; pass --overwrite to run the search afresh")
    return summary
