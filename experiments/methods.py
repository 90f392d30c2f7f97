"""Benchmark (not a test): which search method wins at equal cost, over several seeds.

Grid search, random search, Bayesian optimization (GP + EI) and successive halving over random
candidates (continuing its promoted trainings, the default, and restarting them each rung, as
scikit-learn does) tune the BN model over the same space with the same budget, counted in
training epochs. Each trial trains a fixed number of epochs (no early stopping), so a method's
cost is the sum of the epochs its trainings ran, read from its results.csv. For each method the
bench prints the median and range over seeds of the best validation accuracy found after 25%,
50% and 100% of the budget, and the test accuracy of the method's final model; it draws
best-so-far validation accuracy against epochs spent and against training seconds (the sum of
the trainings' fit times in the search's process), one line per method (median) with a min-max
band over seeds.

    python experiments/methods.py --data-dir ../shared/beans                              # 32x32, 3 seeds
    python experiments/methods.py --data-dir ../shared/beans --image-size 64 --epochs 3   # 64x64, ~1 hour

Every search runs through its own command (tune_grid.py, tune_random.py, tune_bayes.py) into
OUT/<method>-seed<N>/, so an interrupted bench resumes where it stopped: finished searches are
read back, not run again. Each script's own output goes to OUT/<method>-seed<N>.log.

With --jobs N (default 2) N searches run at once, each in a fresh process with cores/N
TensorFlow threads (a search's trials at 32x32 are too small to keep two threads busy, and one
long-lived process slowed down search after search: halving took 332, 435 and 559 s for its
three seeds when every search ran in the bench's own process, over an earlier, wider space).
Wall times are then measured under that sharing, except for whatever runs last, alone. --jobs 1
runs every search in this process (the command's beans_tune.scripts function).
"""

import argparse
import contextlib
import csv
import json
import math
import os
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from beans_tune import cli, outputs, scripts
from beans_tune.tuning.space import DEFAULT_RANGES

import shared  # experiments/shared.py, found beside the experiment it runs

ROOT = Path(__file__).resolve().parents[1]  # where the top-level scripts are, run as programs by --jobs N > 1

# The space every method searches: the searches' default ranges (tuning.space.DEFAULT_RANGES) for
# four of their five hyperparameters, on the scales the searches sample them; batch size is fixed
# so that an epoch costs the same in every trial.
SCALES = {"learning_rate": "log", "decay": "log", "layers": "int", "units": "log-int"}
SPACE = {name: (*(float(v) for v in DEFAULT_RANGES[name].split(":")), scale) for name, scale in SCALES.items()}
FIXED = {"batch_size": 32, "batch_norm": "true"}
TRIALS = 2 ** len(SPACE)  # the grid's size: the budget pays for this many full trainings
FRACTIONS = (0.25, 0.5, 1.0)
METHODS = ("grid", "random", "bayes", "halving", "halving-restart")


def grid_levels(low, high, scale):
    """Two grid values per hyperparameter: the range's quartiles on the scale it is sampled on,
    rounded for integers (2:4 gives 2 and 4); 2^4 = 16 configurations for the four."""
    if scale == "int":
        return [round(low + (high - low) * q) for q in (0.25, 0.75)]
    lo, hi = math.log10(low), math.log10(high)
    values = [10 ** (lo + (hi - lo) * q) for q in (0.25, 0.75)]
    return [round(v) for v in values] if scale == "log-int" else [float(f"{v:.2g}") for v in values]


def budget(epochs):
    """Epochs every method may spend: as many full trainings of `epochs` epochs as the grid has."""
    return TRIALS * epochs


def halving_cost(candidates, epochs, factor=3, restart=True):
    """Epochs successive halving spends from 1 epoch up to `epochs`: each rung keeps
    ceil(n/factor) of its n candidates and trains them to factor times as many epochs, from
    scratch (`restart`, scikit-learn's) or continuing from the rung below (only the extra epochs)."""
    rungs = min(1 + math.floor(math.log(epochs, factor) + 1e-9), 1 + math.floor(math.log(candidates, factor) + 1e-9))
    cost, left, below = 0, candidates, 0
    for rung in range(rungs):
        cost += left * (factor ** rung - (0 if restart else below))
        left, below = math.ceil(left / factor), factor ** rung
    return cost


def halving_candidates(total, epochs, factor=3, restart=True):
    """The most random candidates whose halving, from 1 epoch, spends no more than `total` epochs."""
    candidates = 1
    while halving_cost(candidates + 1, epochs, factor, restart) <= total:
        candidates += 1
    return candidates


def method_argv(method, args, seed, out):
    """(script name, argv) of one method's search. Every trial trains `epochs` epochs (patience
    = epochs: no early stopping), and so does every method's final model."""
    trials = TRIALS
    ranges = {name: f"{low:g}:{high:g}" for name, (low, high, _) in SPACE.items()}
    every = ["--image-size", str(args.image_size), "--seed", str(seed), "--out", str(out),
             "--epochs", str(args.epochs), "--patience", str(args.epochs), "--final-epochs", str(args.epochs),
             *[x for k, v in FIXED.items() for x in (cli.flag(k), str(v))], *shared.untuned_training_flags(),
             *(["--data-dir", args.data_dir] if args.data_dir else [])]
    if method == "grid":
        levels = {name: ",".join(f"{v:g}" for v in grid_levels(*spec)) for name, spec in SPACE.items()}
        return "tune_grid", [*every, *[x for k, v in levels.items() for x in (cli.flag(k), v)]]
    searched = [x for k, v in ranges.items() for x in (cli.flag(k), v)]
    if method == "random":
        return "tune_random", [*every, *searched, "--n-iter", str(trials)]
    if method == "bayes":
        return "tune_bayes", [*every, *searched, "--n-calls", str(trials), "--n-initial-points", str(min(5, trials))]
    restart = method == "halving-restart"
    candidates = halving_candidates(budget(args.epochs), args.epochs, restart=restart)
    return "tune_random", [*every, *searched, "--halving", "--n-iter", str(candidates), "--min-epochs", "1",
                           "--factor", "3", *(["--restart-rungs"] if restart else [])]


def read_curve(out):
    """[(epochs spent so far, best validation accuracy so far, training seconds so far)] in the
    order trainings finished, from results.csv (the epochs a training ran: `epochs_run` under
    halving, else `epochs`; its seconds: `fit_seconds`)."""
    with open(out / "results.csv") as handle:
        rows = list(csv.DictReader(handle))
    spent, best, seconds, curve = 0, 0.0, 0.0, []
    for row in rows:
        spent += int(float(row.get("epochs_run") or row["epochs"]))
        seconds += float(row["fit_seconds"] or 0)
        score = float(row["val_accuracy"]) if row["status"] == "ok" else 0.0
        best = max(best, score)
        curve.append((spent, best, seconds))
    return curve


def best_at(curve, epochs, axis=0):
    """Best validation accuracy among the trainings finished within `epochs` epochs spent (or,
    with axis=2, within that many training seconds)."""
    return max((point[1] for point in curve if point[axis] <= epochs), default=float("nan"))


def spread(values):
    """'median [min-max]' over seeds."""
    values = [v for v in values if not math.isnan(v)]
    if not values:
        return "-"
    return f"{statistics.median(values):.3f} [{min(values):.3f}-{max(values):.3f}]"


def search_command(script, argv, jobs):
    """The command line of one search in a fresh process (the top-level script run as a
    program), with its share of the cores when `jobs` searches run at once."""
    threads = max(1, (os.cpu_count() or 1) // jobs)
    return [sys.executable, str(ROOT / f"{script}.py"), *argv, "--threads-per-trial", str(threads)]


def run_one(method, args, seed, folder):
    """Runs (or reads back) one method's search; returns its record."""
    out = folder / f"{method}-seed{seed}"
    script, argv = method_argv(method, args, seed, out)
    start = time.perf_counter()
    with open(folder / f"{method}-seed{seed}.log", "a") as log:
        if args.jobs == 1:
            with contextlib.redirect_stdout(log):
                code = getattr(scripts, script)(argv)
        else:  # a fresh process, its share of the cores
            code = subprocess.run(search_command(script, argv, args.jobs), stdout=log,
                                  stderr=subprocess.STDOUT).returncode
    if code:
        raise SystemExit(f"methods.py: {method} seed {seed} ended with exit code {code}; see {out}.log")
    best = json.loads((out / "best.json").read_text())
    curve = read_curve(out)
    return {"method": method, "seed": seed, "curve": curve, "epochs": curve[-1][0], "trainings": len(curve),
            "train_seconds": curve[-1][2],
            "test_accuracy": best["test_accuracy"], "search_seconds": best["search_seconds"],
            "bench_seconds": time.perf_counter() - start}


def table(records, total):
    headers = ["method", "trainings", "epochs spent", *[f"best val @{f:.0%}" for f in FRACTIONS],
               "test of final model", "training s", "search wall s"]
    rows = []
    for method in METHODS:
        mine = [r for r in records if r["method"] == method]
        if not mine:
            continue
        rows.append([method, spread([r["trainings"] for r in mine]).replace(".000", ""),
                     spread([r["epochs"] for r in mine]).replace(".000", ""),
                     *[spread([best_at(r["curve"], f * total) for r in mine]) for f in FRACTIONS],
                     spread([r["test_accuracy"] for r in mine]),
                     f"{statistics.median(r['train_seconds'] for r in mine):.0f}",
                     f"{statistics.median(r['search_seconds'] for r in mine):.0f}"])
    return outputs.format_table(headers, rows)


def figure(records, total, title, axis=0):
    """Best validation accuracy so far against epochs spent (axis 0, up to the budget `total`)
    or against training seconds (axis 2, up to the longest search's)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.0), dpi=100)
    if axis == 0:
        xs = list(range(1, total + 1))
    else:
        longest = max(r["curve"][-1][2] for r in records)
        xs = [longest * i / 200 for i in range(1, 201)]
    for method in METHODS:
        mine = [r for r in records if r["method"] == method]
        if not mine:
            continue
        ys = [[best_at(r["curve"], x, axis) for x in xs] for r in mine]
        columns = list(zip(*ys))
        valid = [i for i, c in enumerate(columns) if not any(math.isnan(v) for v in c)]
        x = [xs[i] for i in valid]
        median = [statistics.median(columns[i]) for i in valid]
        line, = ax.plot(x, median, label=f"{method} (median of {len(mine)} seeds)")
        ax.fill_between(x, [min(columns[i]) for i in valid], [max(columns[i]) for i in valid],
                        color=line.get_color(), alpha=0.15, linewidth=0)
    ax.set_xlabel("training epochs spent" if axis == 0 else "training seconds spent (sum of fit times)")
    ax.set_ylabel("best validation accuracy so far")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    return fig


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--image-size", type=cli.number(int, 8, 512), default=32)
    parser.add_argument("--seeds", type=cli.number(int, 1, 100), default=3, help="seeds 0..N-1 (default: 3)")
    parser.add_argument("--epochs", type=cli.number(int, 1, 81), default=9,
                        help=f"epochs of a full training and of halving's top rung, a power of 3 (default: 9); "
                             f"the budget is {TRIALS} full trainings, the grid's size")
    parser.add_argument("--methods", default=",".join(METHODS), help=f"comma list of {', '.join(METHODS)}")
    parser.add_argument("--jobs", type=cli.number(int, 1, 64), default=2,
                        help="searches at once, each in its own process (default: 2; 1: all in this process)")
    parser.add_argument("--out", default=None, help="default: runs/bench-methods-<image size>px")
    args = parser.parse_args(argv)
    methods = list(dict.fromkeys(args.methods.split(",")))
    if unknown := set(methods) - set(METHODS):
        parser.error(f"--methods: unknown {', '.join(sorted(unknown))}")
    if 3 ** round(math.log(args.epochs, 3)) != args.epochs:
        parser.error(f"--epochs: halving's rungs run 1, 3, 9, 27, 81 epochs; give one of them, not {args.epochs}")
    if empty := cli.empty_folder_flag(args):
        parser.error(empty)
    if args.data_dir and not Path(args.data_dir).is_dir():
        parser.error(f"--data-dir: {args.data_dir} is not a folder")
    folder = Path(args.out or f"runs/bench-methods-{args.image_size}px")
    if folder.exists() and not folder.is_dir():
        parser.error(f"--out: {folder} is a file")
    folder.mkdir(parents=True, exist_ok=True)
    total = budget(args.epochs)
    print(f"methods.py: budget {total} epochs per search ({TRIALS} trainings x {outputs.epoch_count(args.epochs)}; "
          f"halving: {halving_candidates(total, args.epochs, restart=False)} candidates from 1 epoch, "
          f"{halving_candidates(total, args.epochs)} restarting its rungs), "
          f"{args.image_size}x{args.image_size}, seeds 0-{args.seeds - 1}, into {folder}/", flush=True)
    start = time.perf_counter()

    def one(job):
        method, seed = job
        record = run_one(method, args, seed, folder)
        print(f"  {method:8s} seed {seed}: best val {record['curve'][-1][1]:.4f}  test "
              f"{record['test_accuracy']:.4f}  {record['trainings']} trainings, {record['epochs']} epochs, "
              f"search {record['search_seconds']:.0f}s  (elapsed {time.perf_counter() - start:.0f}s)", flush=True)
        return record

    jobs = [(method, seed) for seed in range(args.seeds) for method in methods]
    if args.jobs == 1:
        records = [one(job) for job in jobs]
    else:
        with ThreadPoolExecutor(max_workers=args.jobs) as pool:
            records = list(pool.map(one, jobs))
    text = table(records, total)
    print()
    print(text)
    outputs.write_text(folder / "methods.txt", text + "\n")
    outputs.write_json(folder / "methods.json", records)
    what = f"beans, BN model, {args.image_size}x{args.image_size}: best validation accuracy"
    outputs.save_figure(folder / "methods.png", figure(
        records, total, f"{what} vs epochs spent ({outputs.count(args.seeds, 'seed')})"))
    outputs.save_figure(folder / "methods-seconds.png", figure(
        records, total, f"{what} vs training seconds ({outputs.count(args.seeds, 'seed')})", axis=2))
    print(f"\nwrote {folder}/methods.txt, methods.json, methods.png, methods-seconds.png  "
          f"({time.perf_counter() - start:.0f}s)")


if __name__ == "__main__":
    main()
