"""The README's results-at-a-glance figure: each command's test accuracy, one point per resplit.

Reads the resplits.csv files experiments/resplit.py writes and draws, for each command, its test
accuracy on every resplit as a point numbered by its resplit, with the median of each group of
resplits marked and written beside it: the fresh resplits (--fresh-from and up: read by nothing
before they were run, the check), the resplits below them (read while the defaults were chosen)
and the canonical split (resplit 0, read many times: in no median). No TensorFlow; seconds.

    python experiments/glance.py --out docs/figures/glance.png \\
        train_bn.py=runs/resplit-bn/resplits.csv train_bn.py=runs/resplit-bayes/resplits.csv:vs \\
        tune_grid.py=runs/resplit-grid/resplits.csv tune_grid.py=runs/resplit-grid-6/resplits.csv \\
        tune_random.py=runs/resplit-random/resplits.csv tune_bayes.py=runs/resplit-bayes/resplits.csv \\
        --note "train_baseline.py=not run on resplits"

Each positional spec is LABEL=CSV (the command's own columns) or LABEL=CSV:vs (the columns of the
command given to experiments/resplit.py --vs); several specs with one label are merged by resplit, and
one resplit read twice must give the same accuracy. `--markdown` prints the README's results table
(tests/test_docs.py regenerates it from the command shown in the README). Rows run top to bottom
in the order of --order, else in the order their labels first appear (notes last). The medians
are printed too.
"""

import argparse
import csv
import math
import statistics
import sys

from beans_tune import outputs


def read_spec(spec):
    """'LABEL=CSV[:vs]' -> (label, {resplit: test accuracy})."""
    label, sep, rest = spec.partition("=")
    if not sep or not label or not rest:
        raise ValueError(f"{spec!r}: expected LABEL=CSV or LABEL=CSV:vs")
    path, column = rest, "test_accuracy"
    if rest.endswith(":vs"):
        path, column = rest[:-3], "vs_test_accuracy"
    with open(path, newline="") as handle:
        reader = csv.DictReader(handle)
        if column not in (reader.fieldnames or []) or "resplit" not in reader.fieldnames:
            raise ValueError(f"{path}: no resplit or {column} column (is it experiments/resplit.py's resplits.csv?)")
        found = {}
        for row in reader:
            value = row[column].strip()
            if value and math.isfinite(float(value)):
                found[int(row["resplit"])] = float(value)
    return label, found


def collect(specs):
    """{label: {resplit: accuracy}} in order of first appearance; a resplit read twice must agree."""
    rows = {}
    for spec in specs:
        label, found = read_spec(spec)
        held = rows.setdefault(label, {})
        for resplit, value in found.items():
            if resplit in held and abs(held[resplit] - value) > 1e-9:
                raise ValueError(f"{label}: resplit {resplit} reads {held[resplit]} and {value}")
            held[resplit] = value
    return rows


def groups(accuracies, fresh_from):
    """(name, {resplit: accuracy}) for the fresh resplits, the earlier ones and the canonical split."""
    fresh = {k: v for k, v in accuracies.items() if k >= fresh_from}
    read = {k: v for k, v in accuracies.items() if 0 < k < fresh_from}
    canonical = {k: v for k, v in accuracies.items() if k == 0}
    return [("fresh", fresh), ("read", read), ("canonical", canonical)]


def numbers(resplits):
    ks = sorted(resplits)
    if len(ks) > 1 and ks == list(range(ks[0], ks[-1] + 1)):
        return f"{ks[0]}-{ks[-1]}"
    return ", ".join(map(str, ks))


def spread(values):
    values = list(values)
    if len(values) == 1:
        return f"{values[0]:.4f}"
    return f"{statistics.median(values):.4f} [{min(values):.4f}-{max(values):.4f}]"


def summary(rows, fresh_from):
    lines = []
    for label, accuracies in rows.items():
        for name, group in groups(accuracies, fresh_from):
            if not group:
                continue
            where = ("canonical split" if name == "canonical"
                     else f"resplit{'s' if len(group) > 1 else ''} {numbers(group)}")
            lines.append(f"{label}: {where}: test {spread(group.values())}")
    return "\n".join(lines)


def markdown(rows, notes, order, fresh_from):
    """The README's results table: one row per label, the fresh resplits' median [min-max] and
    each fresh resplit's accuracy ("-": none), so the pairs can be read across; a label's note
    beside its median, or in its place where it has no fresh resplit."""
    fresh = sorted({k for accuracies in rows.values() for k in accuracies if k >= fresh_from})

    def line(cells):
        return "| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |"

    lines = [line(["command", "test accuracy, median [min-max]", *(f"resplit {k}" for k in fresh)]),
             line(["---"] * (2 + len(fresh)))]
    for label in order or [*rows, *(n for n in notes if n not in rows)]:
        group = {k: v for k, v in rows.get(label, {}).items() if k >= fresh_from}
        summary = spread(group.values()) if group else f"not run on resplits {fresh_from} and up"
        if label in notes:
            summary = f"{summary} ({notes[label]})" if group else notes[label]
        lines.append(line([f"`{label}`", summary, *(f"{group[k]:.4f}" if k in group else "-" for k in fresh)]))
    return "\n".join(lines)


# Where each group sits in its row (rows grow downwards), how it is drawn, what the legend says.
STYLE = {
    "fresh": dict(offset=-0.22, marker="o", color="tab:blue", fill=True),
    "read": dict(offset=0.22, marker="o", color="tab:orange", fill=False),
    "canonical": dict(offset=0.0, marker="x", color="0.35", fill=True),
}


def figure(rows, notes, order, fresh_from, title):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    labels = order or [*rows, *(n for n in notes if n not in rows)]
    values = [v for accuracies in rows.values() for v in accuracies.values()]
    lo, hi = min(values), max(values)
    pad = max(0.01, (hi - lo) * 0.08)
    fig, ax = plt.subplots(figsize=(9.5, 0.85 * len(labels) + 1.6))
    for y, label in enumerate(labels):
        accuracies = rows.get(label, {})
        if not accuracies:
            ax.text((lo + hi) / 2, y, notes.get(label, "no results"), ha="center", va="center",
                    style="italic", color="0.4", fontsize=9)
            continue
        side = []
        for name, group in groups(accuracies, fresh_from):
            if not group:
                continue
            style = STYLE[name]
            at = y + style["offset"]
            xs = [group[k] for k in sorted(group)]
            if style["marker"] == "x":
                ax.scatter(xs, [at] * len(xs), marker="x", s=42, zorder=3, color=style["color"])
            else:
                ax.scatter(xs, [at] * len(xs), marker=style["marker"], s=42, zorder=3,
                           color=style["color"] if style["fill"] else "none", edgecolors=style["color"])
            for k in sorted(group) if name != "canonical" else ():
                ax.annotate(str(k), (group[k], at), textcoords="offset points", ha="center", fontsize=7,
                            xytext=(0, 8 if name == "fresh" else -13), color=style["color"])
            if name != "canonical":
                median = statistics.median(xs)
                ax.plot([median, median], [at - 0.08, at + 0.08], color=style["color"], lw=2.5, zorder=2)
                side.append((at, f"{spread(xs)}  ({numbers(group)})", style["color"]))
            else:
                side.append((at, f"canonical {xs[0]:.4f}", style["color"]))
        for at, text, color in side:
            ax.text(1.01, at, text, transform=ax.get_yaxis_transform(), va="center", fontsize=8, color=color)
        if label in notes:
            ax.text(lo, y + 0.42, notes[label], fontsize=7, color="0.4", style="italic", va="center")
    ax.set_yticks(range(len(labels)), labels, fontsize=9)
    ax.set_ylim(len(labels) - 0.5, -0.5)
    ax.set_xlim(lo - pad, hi + pad)
    ax.set_xlabel("test accuracy (one point per resplit, numbered; bar: median)")
    ax.grid(axis="x", color="0.9")
    for y in range(1, len(labels)):
        ax.axhline(y - 0.5, color="0.85", lw=0.8)
    ax.set_title(title, fontsize=10)
    legend = [
        Line2D([], [], marker="o", ls="none", color="tab:blue",
               label=f"fresh resplits ({fresh_from} and up): the check"),
        Line2D([], [], marker="o", ls="none", markerfacecolor="none", color="tab:orange",
               label=f"resplits 1-{fresh_from - 1}: read while the defaults were chosen"),
        Line2D([], [], marker="x", ls="none", color="0.35", label="canonical split: in no median"),
    ]
    ax.legend(handles=legend, loc="upper center", bbox_to_anchor=(0.5, -0.06 - 0.3 / len(labels)), ncol=3,
              fontsize=8, frameon=False)
    return fig


def parse(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("specs", nargs="+", metavar="LABEL=CSV[:vs]",
                        help="a command's label and a resplits.csv of experiments/resplit.py (:vs: its --vs columns)")
    parser.add_argument("--out", required=True, help="the figure to write (PNG)")
    parser.add_argument("--note", action="append", default=[], metavar="LABEL=TEXT",
                        help="a row with no resplit results, or a line under a row (repeatable)")
    parser.add_argument("--order", help="comma-separated labels, top to bottom (default: as first given)")
    parser.add_argument("--fresh-from", type=int, default=6,
                        help="the first resplit read by nothing before it was run (default: 6)")
    parser.add_argument("--markdown", action="store_true",
                        help="print the fresh resplits as the README's Markdown table instead of the medians")
    parser.add_argument("--title", default="beans: test accuracy over resplits, median [min-max]")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse(argv)
    try:
        rows = collect(args.specs)
        if not any(rows.values()):
            raise ValueError("the CSVs hold no test accuracy")
        notes = {}
        for note in args.note:
            label, sep, text = note.partition("=")
            if not sep or not label:
                raise ValueError(f"--note {note!r}: expected LABEL=TEXT")
            notes[label] = text
        order = [s.strip() for s in args.order.split(",")] if args.order else None
        if order:
            missing = [label for label in [*rows, *notes] if label not in order]
            if missing:
                raise ValueError(f"--order leaves out {', '.join(missing)}")
            unknown = [label for label in order if label not in rows and label not in notes]
            if unknown:
                raise ValueError(f"--order names {', '.join(unknown)}, which no CSV or --note gives")
    except (OSError, ValueError) as err:
        print(f"glance.py: error: {err}", file=sys.stderr)
        return 2
    print(markdown(rows, notes, order, args.fresh_from) if args.markdown else summary(rows, args.fresh_from))
    outputs.save_figure(args.out, figure(rows, notes, order, args.fresh_from, args.title))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
