"""What the studies share: the median [min, max] cell, a figure's frame, writing the results,
and reading back a grid search they ran."""

import argparse
import json
import os
import statistics
import tempfile
from pathlib import Path

import cli
import common
import outputs
from tuning.store import TrialStore


TFDS_TRAIN_IMAGES = 1034


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
    at (written when the folder is first used); another study, or other settings, is refused."""

    def __init__(self, folder, settings):
        self.path = Path(folder) / "records.jsonl"
        self.settings = json.loads(json.dumps(settings))
        self.done = []
        if not self.path.exists():
            self._write()
            return
        lines = self.path.read_text().splitlines()
        held = json.loads(lines[0]).get("settings", {}) if lines else {}
        if held.get("study") != self.settings["study"]:
            raise ValueError(f"{folder} holds the study {held.get('study')!r}, not {self.settings['study']!r}; "
                             "use another --out")
        if held != self.settings:
            changed = sorted(k for k in set(held) | set(self.settings) if held.get(k) != self.settings.get(k))
            raise ValueError(f"{folder} holds this study measured with other {', '.join(changed)} "
                             f"({', '.join(f'{k} {held.get(k)!r}' for k in changed)}); use another --out")
        for line in lines[1:]:
            try:
                self.done.append(json.loads(line))
            except json.JSONDecodeError:  # a line cut by hand: that training runs again
                break

    def find(self, **key):
        return next((r for r in self.done if all(r.get(k) == v for k, v in key.items())), None)

    def add(self, record):
        self.done.append(json.loads(json.dumps(record)))
        self._write()

    def _write(self):
        """The whole file, replaced atomically: a kill leaves the old one or the new one."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        lines = [json.dumps({"settings": self.settings})] + [json.dumps(r) for r in self.done]
        temporary = self.path.with_name(self.path.name + ".tmp")
        with open(temporary, "w") as handle:
            handle.write("\n".join(lines) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, self.path)


def grid_store(folder):
    """The TrialStore of a grid search the study ran into `folder`, its columns read from the header."""
    header = (folder / "results.csv").read_text().splitlines()[0].split(",")
    return TrialStore(folder / "results.csv", header[1:header.index("fold")])


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
    chosen = common.resolve_data_dir(data_dir)
    return str(chosen.resolve()) if chosen else "tfds.load('beans')"


def train_images(data_dir):
    """How many training images the data has (the folder's, else TFDS beans' 1,034)."""
    chosen = common.resolve_data_dir(data_dir)
    return len(common.check_folder(chosen, splits=("train",))["train"]) if chosen else TFDS_TRAIN_IMAGES


def check(made, args, study, settings=None, fits=None):
    """Every input before any training; returns the study's Records in --out.

    Empty --data-dir/--out, a --data-dir that is not a beans folder (its layout and image headers),
    what `fits(training images)` objects to (a message, else None), an --out that is a file or
    cannot be written, an --out that holds another study or this one measured with other
    `settings`: one line, exit code 2, nothing written."""
    for name in ("data_dir", "out"):
        value = getattr(args, name)
        if value is not None and not value.strip():
            made.error(f"{cli.flag(name)} must name a folder, got an empty string")
    if args.data_dir and not Path(args.data_dir).is_dir():
        made.error(f"--data-dir: {args.data_dir} is not a folder")
    chosen = common.resolve_data_dir(args.data_dir)
    if chosen:
        common.check_folder(chosen)  # a UsageError: one line through cli.run_cli
    if fits and (problem := fits(train_images(args.data_dir))):
        made.error(problem)
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        made.error(f"--out: {args.out} is a file")
    created = not out.exists()
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=out):
            pass
        return Records(out, {"study": study, "data": data_source(args.data_dir), **(settings or {})})
    except OSError as error:
        made.error(f"--out: cannot write in {out} ({error.strerror or error})")
    except ValueError as error:
        made.error(f"--out: {error}")
    finally:
        if created and out.is_dir() and not any(out.iterdir()):
            out.rmdir()
