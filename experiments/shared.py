"""What the experiments share: the flags that train a search's trials as the training scripts
train, and for the BN studies (experiments/bn_*.py) the median [min, max] cell, a figure's frame,
writing the results, and reading back a grid search they ran. An experiment imports it as
`shared`: run as `python experiments/X.py`, Python finds it beside the experiment."""

import argparse
import contextlib
import json
import statistics
from pathlib import Path

from beans_tune import cli, outputs
from beans_tune.folders import check_folder
from beans_tune.hparams import HParams, UsageError
from beans_tune.images import resolve_data_dir
from beans_tune.scripts import tune_grid
from beans_tune.tuning.outfolder import LOCK, claim
from beans_tune.tuning.store import RESULTS, stored

TFDS_TRAIN_IMAGES = 1034


def untuned_training_flags(names=("augment", "schedule", "bn_momentum")):
    """Flags that hold these hyperparameters at the training scripts' defaults (HParams) in a
    search: the studies and benches measure under the training they were written for, whatever
    the searches' own defaults (beans_tune.tuning.space.TRIAL_DEFAULTS)."""
    defaults = HParams()
    return [x for name in names for x in (cli.flag(name), str(getattr(defaults, name)).lower())]


def median_range(values):
    """'median [min, max]' of the values that were measured (None: not measured); '-' if none."""
    values = [v for v in values if v is not None]
    if not values:
        return "-"
    return f"{statistics.median(values):.3f} [{min(values):.3f}, {max(values):.3f}]"


def figure(panels=1):
    """(fig, axes): one row of `panels` axes, Agg backend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, panels, figsize=(4.8 * panels + 1.6 * (panels == 1), 4.0 if panels == 1 else 3.6),
                             dpi=100, squeeze=False)
    return fig, list(axes.flat)


def finish(fig, axes, title, legend=None):
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, **(legend or {}))
    (axes[0].set_title if len(axes) == 1 else fig.suptitle)(title, fontsize=10)
    fig.tight_layout()
    return fig


def save(folder, text, data, figures):
    """Prints the table; writes table.txt, study.json and each {name: figure}."""
    print("\n" + text)
    outputs.write_text(folder / "table.txt", text + "\n")
    outputs.write_json(folder / "study.json", data)
    for name, fig in figures.items():
        outputs.save_figure(folder / name, fig)
    print(f"\nwrote {folder}/table.txt, study.json, {', '.join(figures)}")


class Records:
    """One JSON line per finished training in OUT/records.jsonl, so that a rerun into the same --out
    skips what is done. The first line is the study and the settings its records were measured
    at; another study is refused, and so are other settings once the folder holds anything of
    this one (records, or a grid search's folder). Nothing is written until the first record,
    or until keep() (the grid studies, once their search accepted the folder)."""

    def __init__(self, folder, settings):
        self.folder = Path(folder)
        self.path = self.folder / "records.jsonl"
        self.settings = json.loads(json.dumps(settings))
        self.done = []
        if not self.path.exists():
            return
        lines = self.path.read_text().splitlines()
        try:
            held = json.loads(lines[0])["settings"] if lines else None
            if not isinstance(held, dict) or "study" not in held:
                raise ValueError
        except (ValueError, KeyError, TypeError):
            raise ValueError(f"{self.path} is not a study's records file; use another --out") from None
        if held["study"] != self.settings["study"]:
            raise ValueError(f"{self.folder} holds the study {held['study']!r}, not {self.settings['study']!r}; "
                             "use another --out")
        for line in lines[1:]:
            try:
                self.done.append(json.loads(line))
            except json.JSONDecodeError:  # a line cut by hand: that training runs again
                break
        others = any(p.name not in (self.path.name, LOCK) for p in self.folder.iterdir())  # the lock: claim's
        if held != self.settings and (self.done or others):
            changed = sorted(k for k in set(held) | set(self.settings) if held.get(k) != self.settings.get(k))
            raise ValueError(f"{self.folder} holds this study measured with other settings ("
                             + "; ".join(f"{_flag(k)} {_shown(held.get(k))} there, {_shown(self.settings.get(k))} now"
                                         for k in changed) + "); use another --out")
        self.done = self.done if held == self.settings else []

    def find(self, **key):
        return next((r for r in self.done if all(r.get(k) == v for k, v in key.items())), None)

    def add(self, record):
        self.done.append(json.loads(json.dumps(record)))
        self.keep()

    def keep(self):
        """Writes the whole file, replaced atomically: a kill leaves the old one or the new one."""
        lines = [json.dumps({"settings": self.settings})] + [json.dumps(r) for r in self.done]
        outputs.write_text(self.path, "\n".join(lines) + "\n")


def _flag(name):
    return "--data-dir" if name == "data" else cli.flag(name)


def _shown(value):
    return ",".join(f"{v:g}" if isinstance(v, float) else str(v) for v in value) if isinstance(value, list) \
        else "(none)" if value is None else str(value)


def run_grid(made, args, study, settings, grid_argv):
    """A grid-based study's search: tune_grid.py with grid_argv(args, OUT/grid), in the study's
    locked folder; records.jsonl (the study and its settings) is kept once the search took the
    folder; a resumed, unfinished search trains its failed trainings again. Returns OUT/grid; an
    interrupted or refused search ends the study with its exit code."""
    settings = {"image_size": args.image_size, "epochs": args.epochs, "seeds": args.seeds, **settings}
    with study_folder(made, args, study, settings) as done:
        grid = Path(args.out) / "grid"
        unfinished = [] if (grid / "best.json").exists() else ["--retry-failed"]  # a failed training runs again
        code = tune_grid([*grid_argv(args, grid), *unfinished])
        if code != 2:  # the search took the folder (finished, or interrupted: 130)
            done.keep()
    if code:
        raise SystemExit(code)
    return grid


def grid_store(folder):
    """The TrialStore of the grid search the study ran into `folder`."""
    return stored(folder / RESULTS)


def number_list(kind, low, high, low_open=False):
    """An argparse type: a comma list of at least two distinct numbers, each as cli.number checks it."""
    one = cli.number(kind, low, high, low_open)

    def parse(text):
        values = tuple(one(item.strip()) for item in text.split(","))
        if len(values) < 2 or len(set(values)) != len(values):
            raise argparse.ArgumentTypeError(f"expected at least two distinct values, got {text!r}")
        return values

    parse.__name__ = f"list of {kind.__name__}"
    return parse


def parser(prog, doc, epochs, out):
    """The flags every study takes: --data-dir, --image-size (32), --epochs, --seeds (3), --out.
    cli.ArgumentParser: a bad flag is one line, exit code 2; no abbreviated flags."""
    made = cli.ArgumentParser(prog=prog, description=doc.splitlines()[0],
                              formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    made.add_argument("--data-dir", default=None, help="beans folder (train|validation|test/<class>/*.jpg); "
                                                       "default: $BEANS_DATA_DIR, else tfds.load('beans')")
    made.add_argument("--image-size", type=cli.number(int, 8, 512), default=32, help="images resized to SIZE x SIZE")
    made.add_argument("--epochs", type=cli.number(int, 1, 1000), default=epochs, help="epochs per training")
    made.add_argument("--seeds", type=cli.number(int, 1, 20), default=3, help="seeds 0..N-1 per setting")
    made.add_argument("--out", default=out, help="output folder; rerunning the same study into it resumes")
    return made


def data_source(data_dir):
    """What the data is, for the records' settings: the resolved folder, or TFDS."""
    chosen = resolve_data_dir(data_dir)
    return str(chosen.resolve()) if chosen else "tfds.load('beans')"


def train_images(data_dir):
    """How many training images the data has (the folder's, else TFDS beans' 1,034)."""
    chosen = resolve_data_dir(data_dir)
    return len(check_folder(chosen, splits=("train",))["train"]) if chosen else TFDS_TRAIN_IMAGES


@contextlib.contextmanager
def study_folder(made, args, study, settings=None, fits=None):
    """Every input checked before any training, then --out locked for the block; yields the
    study's Records.

    Empty --data-dir/--out, a --data-dir that is not a beans folder (its layout and image headers),
    what `fits(training images)` objects to (a message, else None), an --out that is a file, cannot
    be written or is in use by another run, an --out that holds another study or this one
    measured with other `settings` (lists compared as sets): one line, exit code 2, nothing
    written. `settings` are the flags that change what a record measures."""
    if empty := cli.empty_folder_flag(args):
        made.error(empty)
    if args.data_dir and not Path(args.data_dir).is_dir():
        made.error(f"--data-dir: {args.data_dir} is not a folder")
    chosen = resolve_data_dir(args.data_dir)
    if chosen:
        check_folder(chosen)  # a UsageError: one line through cli.run_cli
    if fits and (problem := fits(train_images(args.data_dir))):
        made.error(problem)
    if Path(args.out).exists() and not Path(args.out).is_dir():
        made.error(f"--out: {args.out} is a file")
    measured = {k: sorted(v) if isinstance(v, (list, tuple)) else v for k, v in (settings or {}).items()}
    with claim(args.out) as folder:
        try:
            records = Records(folder, {"study": study, "data": data_source(args.data_dir), **measured})
        except (ValueError, OSError) as error:
            raise UsageError(f"--out: {error}") from None
        yield records
