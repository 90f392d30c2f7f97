"""What the studies share: the median [min-max] cell, a figure's frame, writing the results,
and reading back a grid search they ran."""

import argparse
import json
import os
import statistics
from pathlib import Path

import cli
import outputs
from tuning.store import TrialStore


def median_range(values):
    return f"{statistics.median(values):.3f} [{min(values):.3f}-{max(values):.3f}]"


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
    skips what is done (the studies that do not run a grid search). The first line is the
    settings the records were measured at; a rerun with other settings is refused."""

    def __init__(self, folder, settings):
        self.path = Path(folder) / "records.jsonl"
        self.settings = json.loads(json.dumps(settings))
        self.done = []
        if self.path.exists():
            lines = self.path.read_text().splitlines()
            if lines and json.loads(lines[0]).get("settings") != self.settings:
                raise ValueError(f"{self.path} holds records measured with other settings "
                                 f"({lines[0]}); use another --out")
            for line in lines[1:]:
                try:
                    self.done.append(json.loads(line))
                except json.JSONDecodeError:  # a line cut by a kill: that training runs again
                    break

    def find(self, **key):
        return next((r for r in self.done if all(r.get(k) == v for k, v in key.items())), None)

    def add(self, record):
        self.path.parent.mkdir(parents=True, exist_ok=True)
        lines = [json.dumps({"settings": self.settings})] + [json.dumps(r) for r in self.done + [record]]
        temporary = self.path.with_name(self.path.name + ".tmp")
        with open(temporary, "w") as handle:
            handle.write("\n".join(lines) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, self.path)
        self.done.append(record)


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


def parser(doc, epochs, out):
    """The flags every study takes: --data-dir, --image-size (32), --epochs, --seeds (3), --out."""
    made = argparse.ArgumentParser(description=doc.splitlines()[0],
                                   formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    made.add_argument("--data-dir", default=None, help="beans folder (train|validation|test/<class>/*.jpg); "
                                                       "default: $BEANS_DATA_DIR, else tfds.load('beans')")
    made.add_argument("--image-size", type=cli.number(int, 8, 512), default=32, help="images resized to SIZE x SIZE")
    made.add_argument("--epochs", type=cli.number(int, 1, 1000), default=epochs, help="epochs per training")
    made.add_argument("--seeds", type=cli.number(int, 1, 20), default=3, help="seeds 0..N-1 per setting")
    made.add_argument("--out", default=out, help="output folder; rerunning into it resumes")
    return made


def check(made, args, settings=None):
    """Paths, before any training: a --data-dir that is not a folder, an --out that is a file; with
    `settings`, the Records of an earlier run into --out (refused if measured otherwise)."""
    if args.data_dir and not Path(args.data_dir).is_dir():
        made.error(f"--data-dir: {args.data_dir} is not a folder")
    if Path(args.out).exists() and not Path(args.out).is_dir():
        made.error(f"--out: {args.out} is a file")
    if settings is not None:
        try:
            return Records(args.out, settings)
        except (ValueError, OSError) as error:
            made.error(f"--out: {error}")
