"""Output files and printed tables. Every file is written atomically: a crash never leaves a
half-written file, only the old one or the new one."""

import contextlib
import csv
import io
import json
import math
import os
import tempfile
from pathlib import Path

import numpy as np

from .hparams import UsageError


def count(n, word):
    """'1 seed', '3 seeds'."""
    return f"{n} {word}" + ("" if n == 1 else "s")


def epoch_count(n):
    """'1 epoch', '40 epochs'."""
    return count(n, "epoch")


@contextlib.contextmanager
def atomic_path(path):
    """Yields a temporary path beside `path`; renames it into place when the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}-", suffix=path.suffix)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o666 & ~umask())  # mkstemp's 0600 would hide the results from other users
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


@contextlib.contextmanager
def output_folder(path, flag="--out"):
    """Creates `path` if needed and checks that files can be written in it, before any work;
    a folder this call created is removed again if the block fails while it is still empty."""
    path = Path(path)
    created = not path.exists()

    def remove_if_still_empty():
        if created and path.is_dir() and not any(path.iterdir()):
            path.rmdir()

    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as err:
        remove_if_still_empty()
        raise UsageError(f"{flag}: cannot write in {path} ({err.strerror or err})") from None
    try:
        yield path
    except BaseException:
        remove_if_still_empty()
        raise


def umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_text(path, text):
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_bytes(path, data):
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_json(path, data):
    write_text(path, json.dumps(data, indent=2, default=_json_default) + "\n")


def _json_default(value):
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return float(value)
    if isinstance(value, np.bool_):
        return bool(value)
    raise TypeError(f"not JSON serialisable: {value!r}")


def write_history_csv(path, history):
    keys = list(history)
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["epoch", *keys])
    for i in range(len(history[keys[0]]) if keys else 0):
        writer.writerow([i + 1, *(history[k][i] for k in keys)])
    write_text(path, buffer.getvalue())


def save_model(path, model):
    with atomic_path(path) as tmp:
        model.save(tmp)


def save_figure(path, fig):
    import matplotlib.pyplot as plt

    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=100, bbox_inches="tight", format=Path(path).suffix.lstrip("."))
    finally:
        plt.close(fig)


def plot_curves(histories):
    """Loss and accuracy, train (solid) vs validation (dashed), one colour per named run."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for i, (name, history) in enumerate(histories.items()):
        colour = f"C{i}"
        epochs = range(1, len(history.get("loss", [])) + 1)
        for ax, key in zip(axes, ("loss", "accuracy")):
            ax.plot(epochs, history.get(key, []), color=colour, label=f"{name} train")
            ax.plot(epochs, history.get(f"val_{key}", []), color=colour, linestyle="--",
                    label=f"{name} validation")
    for ax, key in zip(axes, ("loss", "accuracy")):
        ax.set_xlabel("epoch")
        ax.set_ylabel(key)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    axes[1].set_ylim(0, 1)
    fig.tight_layout()
    return fig


def binomial_se(accuracy, images):
    """The standard error of an accuracy measured on `images` images, from (correct + 1) /
    (images + 2) so that a perfect score is not certain; NaN without a count."""
    if not images or accuracy is None or not math.isfinite(accuracy):
        return math.nan
    p = (accuracy * images + 1) / (images + 2)
    return math.sqrt(p * (1 - p) / images)


def accuracy_with_se(accuracy, images):
    """'0.9609 ± 0.0171': an accuracy and its standard error over the images it was measured on."""
    se = binomial_se(accuracy, images)
    return f"{accuracy:.4f}" + (f" ± {se:.4f}" if math.isfinite(se) else "")


def format_table(headers, rows):
    """A plain fixed-width table; numbers are formatted by the caller."""
    cells = [[str(h) for h in headers]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = ["  ".join(c.rjust(w) if j else c.ljust(w) for j, (c, w) in enumerate(zip(r, widths)))
             for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
