"""Benchmark (not a test): trials per hour on a Dask cluster of 1 and 2 workers, and memory.

Starts a loopback-only LocalCluster (1 thread per worker, TensorFlow capped at 1 thread per
trial, so that 2 workers can at best double the rate on 2 cores), runs the same random search
on each, and prints trials per hour and their ratio (ideal 2.0). The trials cost the same (only
the learning rate is searched, every trial runs all its epochs), and their number is even: a
throughput figure, not a measure of how unevenly sized trials pack onto workers. Then runs 2 and 10 trials on a
single worker and prints that worker's peak RSS after each.

    python experiments/scale.py --data-dir ../shared/beans [--warm] [--control]

The table splits the ratio in two: what the trials' fit times allow (two trainings side by side
each slower than one alone: the CPU's share) and the rest (start-up, scheduling, an idle worker
at the end); each worker's first training, which traces its graphs, is left out of the fit
medians. --control runs half the trials again without Dask, in one process and then in two at
once: the CPU's share with no scheduler, client or worker at all. Both halves of a comparison run
minutes apart, so a machine whose speed drifts moves these figures (docs/development.md).
"""

import argparse
import csv
import json
import resource
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from beans_tune import outputs
from beans_tune.scripts import tune_random

import shared  # experiments/shared.py, found beside the experiment it runs

SCRIPT = Path(__file__).resolve().parents[1] / "tune_random.py"  # run as a program by --control


def read_rows(path):
    """results.csv as dicts, fit_seconds as a number (the columns this bench reads)."""
    with open(path) as handle:
        return [{**row, "fit_seconds": float(row["fit_seconds"])} for row in csv.DictReader(handle)]


def steady_fits(rows):
    """Fit seconds of every training but each worker's (or process's) first: a first training
    traces its graphs, which would weigh on a median of a few trials."""
    seen, fits = set(), []
    for row in rows:
        if row["worker"] in seen:
            fits.append(row["fit_seconds"])
        seen.add(row["worker"])
    return fits or [row["fit_seconds"] for row in rows]  # one training per worker: nothing else to go by


def peak_rss_mib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def search_argv(data_dir, out, n_iter, epochs, image_size, seed=0):
    """tune_random.py's flags for this bench's search: trials that cost the same, 1 thread each."""
    return [*(["--data-dir", data_dir] if data_dir else []), "--out", str(out), "--n-iter", str(n_iter), "--epochs",
            str(epochs), "--patience", str(epochs), "--image-size", str(image_size), "--threads-per-trial", "1",
            "--seed", str(seed), "--learning-rate", "1e-4:1e-2", "--layers", "2", "--units", "64", "--batch-size",
            "32", "--decay", "0", *shared.untuned_training_flags()]


def search(cluster, data_dir, out, n_iter, epochs, image_size, seed=0):
    argv = [*search_argv(data_dir, out, n_iter, epochs, image_size, seed), "--scheduler", cluster.scheduler_address]
    code = tune_random(argv)
    if code:
        sys.exit(code)
    return json.loads((out / "best.json").read_text())["search_seconds"], read_rows(out / "results.csv")


def plain_fits(data_dir, tmp, n_iter, epochs, image_size):
    """Without Dask: the same search (its trials' fit seconds) in one process alone, then in two
    processes at once. What two single-threaded trainings cost side by side on this CPU, apart
    from anything a scheduler, client or worker adds."""
    def start(name):
        argv = search_argv(data_dir, Path(tmp) / name, n_iter, epochs, image_size)
        return subprocess.Popen([sys.executable, str(SCRIPT), *argv, "--final-epochs", "1"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)

    def fits(processes):
        for process in processes:
            _, err = process.communicate()
            if process.returncode:
                sys.exit(f"scale.py: the plain search failed ({process.returncode}): {err.strip()[-500:]}")
        return [fit for name in names for fit in steady_fits(read_rows(Path(tmp) / name / "results.csv"))]

    names = ["alone"]
    alone = fits([start("alone")])
    names = ["pair-a", "pair-b"]
    together = fits([start(name) for name in names])
    return alone, together


def main(argv=None):
    from distributed import LocalCluster

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--n-iter", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--warm", action="store_true",
                        help="import TensorFlow on the workers before the clock starts (a steady-state rate)")
    parser.add_argument("--control", action="store_true",
                        help="also run the search's trials without Dask, in one process and then two at once")
    args = parser.parse_args(argv)
    rates, rss, fit = {}, {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        for workers in (1, 2):
            with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, host="127.0.0.1",
                              dashboard_address=None, worker_dashboard_address=None) as cluster:
                if args.warm:
                    from distributed import Client

                    with Client(cluster) as client:  # what a long search pays once per worker
                        client.run(lambda: bool(__import__("tensorflow")))
                seconds, rows = search(cluster, args.data_dir, Path(tmp) / f"w{workers}", args.n_iter,
                                       args.epochs, args.image_size)
                rates[workers] = len(rows) / seconds * 3600
                fit[workers] = statistics.median(steady_fits(rows))
                print(f"{workers} worker(s): {len(rows)} trials in {seconds:.1f}s = {rates[workers]:.0f} trials/hour "
                      f"on {len({r['worker'] for r in rows})} worker process(es)", flush=True)
        with LocalCluster(n_workers=1, threads_per_worker=1, processes=True, host="127.0.0.1",
                          dashboard_address=None, worker_dashboard_address=None) as cluster:
            from distributed import Client

            with Client(cluster) as client:
                for trials, n_iter in ((2, 2), (10, 8)):  # 2 trials, then 8 more on the same worker
                    search(cluster, args.data_dir, Path(tmp) / f"rss{trials}", n_iter, 2, args.image_size,
                           seed=trials)
                    rss[trials] = list(client.run(peak_rss_mib).values())[0]
                    print(f"worker peak RSS after {trials} trials: {rss[trials]:.0f} MiB", flush=True)
        plain = plain_fits(args.data_dir, tmp, max(args.n_iter // 2, 2), args.epochs, args.image_size) if args.control else None
    ratio, cpu = rates[2] / rates[1], 2 * fit[1] / fit[2]
    rows = [
        ["trials/hour, 1 worker", f"{rates[1]:.0f}", ""],
        ["trials/hour, 2 workers", f"{rates[2]:.0f}", ""],
        ["ratio", f"{ratio:.2f}", "2.0 ideal"],
        ["median fit s, 1 worker / 2 workers (first trainings left out)", f"{fit[1]:.1f} / {fit[2]:.1f}", ""],
        ["  ratio the fits allow: 2 x fit1 / fit2", f"{cpu:.2f}", "2.0 ideal"],
        ["  the rest (start-up, scheduling, tail): ratio / that", f"{ratio / cpu:.2f}", "1.0 ideal"]]
    if plain:
        alone, together = (statistics.median(f) for f in plain)
        rows += [["without Dask: median fit s, 1 process / 2 at once (firsts out)", f"{alone:.1f} / {together:.1f}", ""],
                 ["  ratio the fits allow: 2 x alone / at once", f"{2 * alone / together:.2f}", "2.0 ideal"]]
    print()
    print(outputs.format_table(["measure", "value", "target"], [
        *rows,
        ["worker peak RSS after 2 trials (MiB)", f"{rss[2]:.0f}", ""],
        ["worker peak RSS after 10 trials (MiB)", f"{rss[10]:.0f}", ""],
        ["RSS 10 / 2", f"{rss[10] / rss[2]:.2f}", ""],
    ]))


if __name__ == "__main__":
    main()
