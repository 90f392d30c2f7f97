"""What the studies share: the median [min-max] cell, a figure's frame, writing the results,
and reading back a grid search they ran."""

import argparse
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


def grid_store(folder):
    """The TrialStore of a grid search the study ran into `folder`, its columns read from the header."""
    header = (folder / "results.csv").read_text().splitlines()[0].split(",")
    return TrialStore(folder / "results.csv", header[1:header.index("fold")])


def parser(doc, epochs, out):
    """The flags every study takes: --data-dir, --image-size (32), --epochs, --seeds (3), --out."""
    made = argparse.ArgumentParser(description=doc.splitlines()[0])
    made.add_argument("--data-dir", default=None)
    made.add_argument("--image-size", type=cli.number(int, 8, 512), default=32)
    made.add_argument("--epochs", type=cli.number(int, 1, 1000), default=epochs)
    made.add_argument("--seeds", type=cli.number(int, 1, 20), default=3)
    made.add_argument("--out", default=out)
    return made


def check(made, args):
    """Paths, before any training: a --data-dir that is not a folder, an --out that is a file."""
    if args.data_dir and not Path(args.data_dir).is_dir():
        made.error(f"--data-dir: {args.data_dir} is not a folder")
    if Path(args.out).exists() and not Path(args.out).is_dir():
        made.error(f"--out: {args.out} is a file")
