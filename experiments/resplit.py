"""Benchmark (not a test): a command's accuracy on K stratified resplits of all labelled images.

With --vs, a second command on the same resplits and the paired difference.

One split of beans cannot say what a command's accuracy is: its 128 test images move a model by
0.78 points each, and the canonical test split has been read while this project's defaults were
chosen. A resplit pools train + validation + test (1,295 images on beans) and deals them out again
with the canonical sizes and class balance (1,034 / 133 / 128); each run reads its resplit's test
images once, by its final model, as every script does.

    python experiments/resplit.py --data-dir ../shared/beans --resplits 5 --out runs/resplit-bn -- train_bn.py
    python experiments/resplit.py --data-dir ../shared/beans --resplits 5 --out runs/resplit-grid \\
        --vs train_bn.py -- tune_grid.py

Resplit 0 is the canonical split itself; resplit k >= 1 orders each class's images by the SHA-256
of "k/<split>/<class>/<file>" and deals test, validation and train from that order, so resplit k
is the same wherever the same images are. Each resplit is a folder of symbolic links, made once
under OUT/splits/. Run k trains with --seed k (the seed moves a training by points too, so the
spread over resplits covers both), writes into OUT/main/resplit-k/ (OUT/vs/resplit-k/ for --vs)
and logs to the .log beside it. A finished run is read back; an interrupted one is run again with
the same --out, so a search resumes from its results.csv. The table goes to stdout,
OUT/resplits.csv and OUT/resplits.txt.
"""

import argparse
import contextlib
import csv
import hashlib
import io
import json
import math
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

from filelock import FileLock

from beans_tune import cli, outputs, scripts
from beans_tune.folders import check_folder
from beans_tune.hparams import UsageError
from beans_tune.images import DATA_ENV, resolve_data_dir
from beans_tune.tuning import methods, report
from beans_tune.tuning.run import prepare

ROOT = Path(__file__).resolve().parents[1]  # where the top-level scripts are: each run is one, as a program
SCRIPTS = ("train_baseline", "train_bn", "tune_grid", "tune_random", "tune_bayes")
SEARCHES = {"tune_grid": methods.Grid, "tune_random": methods.Random, "tune_bayes": methods.Bayes}
SET_HERE = ("--data-dir", "--seed", "--out")  # each run's, chosen by this bench
LISTING = "resplit.json"


# --------------------------------------------------------------------------------------
# Resplits
# --------------------------------------------------------------------------------------


def labelled_images(root):
    """{split: [(key, class, path)]} of a folder laid out split/class/file; the key
    "split/class/file" names an image wherever the folder lies."""
    found = check_folder(root)
    return {split: [(f"{split}/{p.parent.name}/{p.name}", p.parent.name, p) for p in files]
            for split, files in found.items()}


def resplit(images, k):
    """{split: [(key, class, path)]}: resplit 0 is `images` as they are; resplit k >= 1 deals
    each class's pooled images, ordered by SHA-256 of "k/key", into test, validation and train
    with each split's own count of that class."""
    if k == 0:
        return images
    dealt = {split: [] for split in images}
    for name in sorted({c for members in images.values() for _, c, _ in members}):
        pool = sorted((item for members in images.values() for item in members if item[1] == name),
                      key=lambda item: hashlib.sha256(f"{k}/{item[0]}".encode()).hexdigest())
        start = 0
        for split in ("test", "validation", "train"):
            n = sum(1 for _, c, _ in images[split] if c == name)
            dealt[split].extend(pool[start:start + n])
            start += n
    return {split: sorted(members) for split, members in dealt.items()}


def make_resplit(folder, images, k, source):
    """OUT/splits/resplit-k: split/class/<original split>-<file> links to the images. Made once,
    under a lock (two benches started on one --out share its splits), built beside and renamed
    into place; a folder already there must hold the same images, every one of them linked."""
    listing = {"source": str(source), "resplit": k,
               "splits": {split: [key for key, _, _ in members] for split, members in resplit(images, k).items()}}
    folder.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(folder.parent / ".lock"):
        if folder.exists():
            _check_resplit(folder, listing)
            return folder
        building = folder.with_name(f".{folder.name}-building")
        shutil.rmtree(building, ignore_errors=True)
        paths = {key: path for members in images.values() for key, _, path in members}
        for split, keys in listing["splits"].items():
            for key in keys:
                original, name, file = key.split("/")
                link = building / split / name / f"{original}-{file}"
                link.parent.mkdir(parents=True, exist_ok=True)
                link.symlink_to(paths[key].resolve())
        outputs.write_json(building / LISTING, listing)
        building.rename(folder)
    return folder


def _check_resplit(folder, listing):
    """A resplit folder made before: the same images, each linked where this bench puts it."""
    k = listing["resplit"]
    try:
        held = json.loads((folder / LISTING).read_text())
    except (OSError, ValueError):
        raise UsageError(f"{folder} exists but is no resplit made by this bench; choose another --out") from None
    if held != listing:
        raise UsageError(f"{folder} holds resplit {k} of other images; choose another --out")
    for split, keys in listing["splits"].items():
        for key in keys:
            original, name, file = key.split("/")
            if not (folder / split / name / f"{original}-{file}").is_file():
                raise UsageError(f"{folder} lacks {split}/{name}/{original}-{file} (or its image); move the "
                                 "folder away to make the resplit again")


# --------------------------------------------------------------------------------------
# Runs
# --------------------------------------------------------------------------------------


def check_command(command, what):
    """The script and flags of a command, parsed as the script parses them, before anything runs:
    UsageError on a bad one. Returns (script, its flags)."""
    script = Path(command[0]).stem if command else None
    if script not in SCRIPTS or (command and not command[0].endswith(".py")):
        raise UsageError(f"{what}: give one of {', '.join(s + '.py' for s in SCRIPTS)}, "
                         f"got {' '.join(command) or 'nothing'}")
    flags = command[1:]
    taken = [a.split("=")[0] for a in flags if a.split("=")[0] in SET_HERE]
    if taken:
        raise UsageError(f"{what}: {', '.join(dict.fromkeys(taken))} is set for each resplit by this "
                         "bench; leave it out")
    stderr = io.StringIO()
    try:
        with contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(io.StringIO()):
            if script in SEARCHES:
                prepare([*flags, "--data-dir", "."], SEARCHES[script]())
            else:
                scripts.parse([*flags, "--data-dir", "."], script, batch_norm=script == "train_bn")
    except UsageError as err:
        raise UsageError(f"{what}: {script}.py: {err}") from None
    except SystemExit as stop:
        said = stderr.getvalue().strip().splitlines()
        if stop.code:
            raise UsageError(f"{what}: {said[-1] if said else f'{script}.py refused its flags'}") from None
        raise UsageError(f"{what}: {script}.py would only print its help") from None
    return script, flags


def read_result(folder, script):
    """{val_accuracy, test_accuracy} of the run's model, or None before it finished.
    val_accuracy is the score the model was kept by: a search's best trial, a training's best
    epoch. train_bn.py --compare: its BN model."""
    if script.startswith("tune_"):
        path = folder / "best.json"
    else:
        path = next((p for p in (folder / "metrics.json", folder / ("bn" if script == "train_bn" else "baseline")
                                 / "metrics.json") if p.exists()), folder / "metrics.json")
    if not path.exists():
        return None
    found = json.loads(path.read_text())
    return {"val_accuracy": found["val_accuracy"], "test_accuracy": found["test_accuracy"]}


def run_one(script_path, flags, data, seed, out, log_path):
    """Runs the script (ROOT / "<script>.py") with its flags in a fresh process; returns its exit
    code and wall seconds."""
    argv = [sys.executable, str(script_path), *flags, "--data-dir", str(data), "--seed", str(seed), "--out", str(out)]
    start = time.perf_counter()
    with open(log_path, "a") as log:
        log.write(f"$ {shlex.join(argv[1:])}\n")
        log.flush()
        # Ctrl-C back to its default in the run: a bench started in the background (`nohup ... &`)
        # ignores SIGINT, its children would inherit that and ignore the one stop() sends them
        child = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT,
                                 preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
        code = wait_for(child)
    return code, time.perf_counter() - start


def wait_for(child):
    """The run's exit code. On Ctrl-C (or a kill of this bench) the run saves what it finished
    and stops (stop()); a second Ctrl-C kills it at once, as a kill -9 would; the interrupt is
    raised again once the run has ended."""
    try:
        return child.wait()
    except KeyboardInterrupt:
        try:
            stop(child)
        except KeyboardInterrupt:
            child.kill()
            child.wait()
        raise


def stop(child):
    """Lets the run save what it finished and stop: a Ctrl-C at the terminal reached it too; a
    kill of this bench alone did not, so it is sent one after 5 s; after 2 more minutes, a kill."""
    try:
        child.wait(timeout=5)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            child.send_signal(signal.SIGINT)
    try:
        child.wait(timeout=120)
    except subprocess.TimeoutExpired:
        child.kill()
        child.wait()


def record_wall(path, seconds, code):
    """Each invocation's wall time, kept beside the run (a resumed run took them all)."""
    held = json.loads(path.read_text()) if path.exists() else {"invocations": []}
    held["invocations"].append({"wall_seconds": round(seconds, 1), "exit_code": code})
    outputs.write_json(path, held)


def wall_of(path):
    if not path.exists():
        return math.nan
    return sum(i["wall_seconds"] for i in json.loads(path.read_text())["invocations"])


# --------------------------------------------------------------------------------------
# Summaries
# --------------------------------------------------------------------------------------


def spread(values, digits=4):
    """'median [min-max]' of the finite values."""
    values = [v for v in values if v is not None and math.isfinite(v)]
    if not values:
        return "-"
    return f"{statistics.median(values):.{digits}f} [{min(values):.{digits}f}-{max(values):.{digits}f}]"


def sign_test(differences):
    """What K paired differences say: (positive, negative, two-sided exact sign-test p over the
    non-zero ones, confidence that [min, max] holds the median difference)."""
    from scipy.stats import binomtest

    positive = sum(d > 0 for d in differences)
    negative = sum(d < 0 for d in differences)
    p = binomtest(positive, positive + negative).pvalue if positive + negative else 1.0
    # the distribution-free interval from the extreme order statistics: P(min < m < max) = 1 - 2 * 2^-K
    coverage = 1 - 2 * 0.5 ** len(differences) if differences else 0.0
    return positive, negative, p, coverage


def paired_line(differences):
    positive, negative, p, coverage = sign_test(differences)
    k = len(differences)
    return (f"paired difference in test accuracy (command - vs), {k} resplit{'s' if k != 1 else ''}: median "
            f"{statistics.median(differences):+.4f}, range [{min(differences):+.4f}, {max(differences):+.4f}] "
            f"(the range holds the median difference with {coverage:.0%} confidence); higher in {positive}, lower "
            f"in {negative}, tied in {k - positive - negative}; sign test p = {p:.3f} (two-sided, ties left out; "
            f"{positive + negative} untied pairs can give no less than {min(1.0, 2 * 0.5 ** (positive + negative)):.3f})")


def summary(rows, commands):
    """The per-resplit table and the median [min-max] lines; the canonical split (resplit 0)
    stands apart from the resplits' median."""
    labels = list(commands)
    headers = ["resplit", "seed"]
    for label in labels:
        prefix = "" if label == "main" else "vs "
        headers += [f"{prefix}val_acc", f"{prefix}test_acc", f"{prefix}wall"]
    if "vs" in labels:
        headers.append("test difference")
    table = []
    for row in rows:
        cells = ["0 (canonical)" if row["resplit"] == 0 else row["resplit"], row["seed"]]
        for label in labels:
            cells += [_acc(row[f"{label}_val_accuracy"]), _acc(row[f"{label}_test_accuracy"]),
                      _duration(row[f"{label}_wall_seconds"])]
        if "vs" in labels:
            d = row["test_difference"]
            cells.append("-" if d is None else f"{d:+.4f}")
        table.append(cells)
    lines = [outputs.format_table(headers, table), ""]
    resplits = [r for r in rows if r["resplit"] != 0]
    for label in labels:
        name = " ".join(commands[label])
        done = [r for r in resplits if r[f"{label}_test_accuracy"] is not None]
        if done:
            lines.append(f"{name}: test {spread([r[f'{label}_test_accuracy'] for r in done])}, "
                         f"val {spread([r[f'{label}_val_accuracy'] for r in done])}, median [min-max] over "
                         f"{len(done)} resplit{'s' if len(done) != 1 else ''} ({_numbers(done)}), seed = resplit")
        canonical = next((r for r in rows if r["resplit"] == 0 and r[f"{label}_test_accuracy"] is not None), None)
        if canonical:
            lines.append(f"{name}: canonical split (seed 0): test {canonical[f'{label}_test_accuracy']:.4f}, "
                         f"val {_acc(canonical[f'{label}_val_accuracy'])}")
    if "vs" in labels:
        differences = [r["test_difference"] for r in resplits if r["test_difference"] is not None]
        if differences:
            lines.append(paired_line(differences))
    return "\n".join(lines)


def _acc(value):
    return "-" if value is None or not math.isfinite(value) else f"{value:.4f}"


def _duration(seconds):
    return "-" if seconds is None or not math.isfinite(seconds) else report.duration(seconds)


def _numbers(rows):
    ks = [r["resplit"] for r in rows]
    return f"{ks[0]}-{ks[-1]}" if ks == list(range(ks[0], ks[-1] + 1)) and len(ks) > 1 else ", ".join(map(str, ks))


def write_csv(path, rows, labels):
    columns = ["resplit", "seed"]
    for label in labels:
        prefix = "" if label == "main" else "vs_"
        columns += [f"{prefix}val_accuracy", f"{prefix}test_accuracy", f"{prefix}wall_seconds"]
    if "vs" in labels:
        columns.append("test_difference")
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        values = [row["resplit"], row["seed"]]
        for label in labels:
            values += [row[f"{label}_val_accuracy"], row[f"{label}_test_accuracy"],
                       round(row[f"{label}_wall_seconds"], 1) if math.isfinite(row[f"{label}_wall_seconds"]) else ""]
        if "vs" in labels:
            values.append("" if row["test_difference"] is None else round(row["test_difference"], 6))
        writer.writerow(["" if v is None else v for v in values])
    outputs.write_text(path, buffer.getvalue())


# --------------------------------------------------------------------------------------
# The bench
# --------------------------------------------------------------------------------------


def parse(argv):
    parser = cli.ArgumentParser(prog="resplit.py", description=__doc__.splitlines()[0],
                                usage="%(prog)s --data-dir DIR [--resplits K] [--first N] [--out OUT] "
                                      "[--vs 'SCRIPT.py FLAGS'] -- SCRIPT.py [FLAGS]")
    parser.add_argument("--data-dir", default=None,
                        help=f"the labelled images, laid out train|validation|test/<class>/* (default: ${DATA_ENV})")
    parser.add_argument("--resplits", type=cli.number(int, 1, 100), default=3, metavar="K",
                        help="how many resplits (default: 3, range [1, 100]); the sign test of K paired "
                             "differences (the canonical split, --first 0, and ties left out) cannot go below "
                             "p = 2^(1-K): 5 give 0.062")
    parser.add_argument("--first", type=cli.number(int, 0, 10**6), default=1, metavar="N",
                        help="the first resplit's number (default: 1); 0 is the canonical split, shown beside "
                             "the resplits' median, not in it")
    parser.add_argument("--out", default=None, help="default: runs/resplit-<script>-<hash of the commands>")
    parser.add_argument("--vs", default=None, metavar="'SCRIPT.py FLAGS'",
                        help="a second command, run on the same resplits with the same seeds: the table gains "
                             "the paired difference in test accuracy")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="after --: the script and its flags")
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if empty := cli.empty_folder_flag(args):
        raise UsageError(empty)
    data = resolve_data_dir(args.data_dir)
    if data is None:
        raise UsageError(f"give --data-dir DIR (or set {DATA_ENV}): the folder whose labelled "
                         "images are dealt out again")
    commands = {"main": check_command(command, "the command")}
    if args.vs is not None:
        try:
            vs = shlex.split(args.vs)
        except ValueError as err:
            raise UsageError(f"--vs: {err}") from None
        commands["vs"] = check_command(vs, "--vs")
    digest = hashlib.sha256(json.dumps([command, args.vs]).encode()).hexdigest()[:8]
    out = Path(args.out or f"runs/resplit-{commands['main'][0]}-{digest}").absolute()  # runs start elsewhere
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out must be a folder, {out} is a file")
    if data.resolve() in (out.resolve(), *out.resolve().parents):
        raise UsageError(f"--out {out} lies in the data folder {data}; choose a folder outside it")
    for label, (script, flags) in commands.items():
        if (out / label).exists() and not (out / label).is_dir():
            raise UsageError(f"--out: {out / label} is a file, where this bench keeps its runs")
        recorded = out / label / "command.json"
        if recorded.exists():
            try:
                held = json.loads(recorded.read_text())
            except (OSError, ValueError):
                raise UsageError(f"--out: {recorded} is not this bench's record of a command; choose "
                                 "another --out") from None
            if held != [f"{script}.py", *flags]:
                shown = shlex.join(held) if isinstance(held, list) and all(isinstance(a, str) for a in held) else held
                raise UsageError(f"--out: {out / label} holds the runs of another command: {shown}")
    return args, data, commands, out


def run(argv):
    args, data, commands, out = parse(argv)
    images = labelled_images(data)  # every header checked before any training
    numbers = range(args.first, args.first + args.resplits)
    shown = {label: [f"{script}.py", *flags] for label, (script, flags) in commands.items()}
    with outputs.output_folder(out):
        # every resplit first: a folder that holds other images is refused before anything trains
        folders = {k: make_resplit(out / "splits" / f"resplit-{k}", images, k, data.resolve()) for k in numbers}
        for label, command in shown.items():
            outputs.write_json(out / label / "command.json", command)
        print(f"resplit.py: {shlex.join(shown['main'])}" + (f"  vs  {shlex.join(shown['vs'])}" if "vs" in shown else "")
              + f"  (resplits {numbers[0]}-{numbers[-1]} of {data}, seed = resplit; into {out}/)", flush=True)
        rows = []
        for k in numbers:
            folder = folders[k]
            row = {"resplit": k, "seed": k}
            for label, (script, flags) in commands.items():
                run_dir, wall_path = out / label / f"resplit-{k}", out / label / f"resplit-{k}.wall.json"
                found = read_result(run_dir, script)
                if found is None:
                    start = time.perf_counter()
                    try:
                        code, seconds = run_one(ROOT / f"{script}.py", flags, folder, k, run_dir,
                                                out / label / f"resplit-{k}.log")
                    except KeyboardInterrupt:  # the wall column sums every invocation, this one too
                        record_wall(wall_path, time.perf_counter() - start, 130)
                        raise
                    record_wall(wall_path, seconds, code)
                    found = read_result(run_dir, script)
                    if code or found is None:
                        raise cli.RunFailed(f"resplit {k}: {shlex.join(shown[label])} ended with exit code {code} "
                                            f"and no result; see {out / label / f'resplit-{k}.log'}")
                    note = f"wall {_duration(seconds)}"
                else:
                    note = "read back"
                row.update({f"{label}_val_accuracy": found["val_accuracy"],
                            f"{label}_test_accuracy": found["test_accuracy"],
                            f"{label}_wall_seconds": wall_of(wall_path)})
                print(f"  resplit {k}{'' if label == 'main' else ' (vs)'}: val {_acc(found['val_accuracy'])}  "
                      f"test {found['test_accuracy']:.4f}  ({note})", flush=True)
            row["test_difference"] = (row["main_test_accuracy"] - row["vs_test_accuracy"]) if "vs" in commands else None
            rows.append(row)
            write_csv(out / "resplits.csv", rows, list(commands))
        text = summary(rows, shown)
        print()
        print(text)
        outputs.write_text(out / "resplits.txt", text + "\n")


def _terminate(signum, frame):
    raise KeyboardInterrupt  # a kill (SIGTERM) stops the run as Ctrl-C does: what finished is kept


def main(argv=None):
    previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        code = cli.run_cli(run, argv, "resplit.py")
    finally:
        signal.signal(signal.SIGTERM, previous)
    if code == 130:
        print("resplit.py: finished runs are kept; run the same command again to resume", file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())
