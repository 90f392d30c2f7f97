"""Benchmark (not a test): one command over several seeds, the median and range of what it reports.

A single seed's accuracy on beans moves by points (133 validation and 128 test images; early
stopping on a noisy validation curve), so docs/accuracy.md states each default command's accuracy as
the median [min-max] over seeds measured with this script:

    python experiments/seeds.py --seeds 3 -- train_bn.py --data-dir ../shared/beans --compare
    python experiments/seeds.py --seeds 3 -- tune_random.py --data-dir ../shared/beans

Each seed runs the script's command (its beans_tune.scripts function, in this process) with
`--seed N --out OUT/seedN`; a seed whose folder already holds its results is read back, so an
interrupted bench resumes. The script's own output goes to OUT/seedN.log.
"""

import argparse
import contextlib
import hashlib
import json
import statistics
import time
from pathlib import Path

from beans_tune import cli, outputs, scripts

SCRIPTS = ("train_baseline", "train_bn", "tune_grid", "tune_random", "tune_bayes")  # each a beans_tune.scripts function


def expected_models(script, command):
    """The models a finished run of the command has results for."""
    if script.startswith("tune_"):
        return {"best"}
    if script == "train_bn":
        return {"baseline", "bn"} if "--compare" in command else {"bn"}
    return {"baseline"}


def results(folder):
    """{model: {val_accuracy, test_accuracy, epochs, seconds}} from what the script wrote, or None."""
    if (folder / "best.json").exists():  # a search: its final model
        best = json.loads((folder / "best.json").read_text())
        return {"best": {"val_accuracy": best["final_val_accuracy"], "test_accuracy": best["test_accuracy"],
                         "epochs": best["final_epochs"], "seconds": best["search_seconds"]}}
    found = {}
    for metrics in sorted([folder / "metrics.json", *folder.glob("*/metrics.json")]):
        if metrics.exists():
            m = json.loads(metrics.read_text())
            found[m["model"]] = {"val_accuracy": m["val_accuracy"], "test_accuracy": m["test_accuracy"],
                                 "epochs": m["epochs"], "seconds": m["train_seconds"]}
    return found or None


def spread(values, digits=4):
    if any(v is None for v in values):  # a final model trained on validation (--final-data) has no score there
        return "trained on it"
    return f"{statistics.median(values):.{digits}f} [{min(values):.{digits}f}-{max(values):.{digits}f}]"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     usage="%(prog)s [--seeds N] [--out DIR] -- SCRIPT.py [its flags]")
    parser.add_argument("--seeds", type=cli.number(int, 1, 100), default=3, help="seeds 0..N-1 (default: 3)")
    parser.add_argument("--first-seed", type=cli.number(int, 0, 10**6), default=0)
    parser.add_argument("--out", default=None, help="default: runs/bench-seeds-<script>-<hash of the command>")
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    script = Path(command[0]).stem if command else None
    if script not in SCRIPTS:
        parser.error(f"give one of {', '.join(s + '.py' for s in SCRIPTS)} after --")
    if any(arg.split("=")[0] in ("--seed", "--out") for arg in command):
        parser.error("--seed and --out are set per seed by this bench")
    command_main = getattr(scripts, script)
    digest = hashlib.sha256(json.dumps(command).encode()).hexdigest()[:8]
    folder = Path(args.out or f"runs/bench-seeds-{script}-{digest}")
    if folder.exists() and not folder.is_dir():
        parser.error(f"--out: {folder} is a file")
    recorded = folder / "command.json"
    if recorded.exists() and json.loads(recorded.read_text()) != command:
        parser.error(f"--out: {folder} holds the results of another command: "
                     f"{' '.join(json.loads(recorded.read_text()))}")
    folder.mkdir(parents=True, exist_ok=True)
    outputs.write_json(recorded, command)
    wanted = expected_models(script, command)
    print(f"seeds.py: {' '.join(command)}  (seeds {args.first_seed}-{args.first_seed + args.seeds - 1}, "
          f"into {folder}/)", flush=True)
    per_seed = {}
    for seed in range(args.first_seed, args.first_seed + args.seeds):
        out = folder / f"seed{seed}"
        found = results(out) if out.exists() else None
        if found is None or set(found) != wanted:  # not run, or cut short: run it (a search resumes)
            start = time.perf_counter()
            with open(folder / f"seed{seed}.log", "w") as log, contextlib.redirect_stdout(log):
                code = command_main([*command[1:], "--seed", str(seed), "--out", str(out)])
            if code:
                raise SystemExit(f"seeds.py: seed {seed} ended with exit code {code}; see {folder}/seed{seed}.log")
            found = results(out)
            if found is None or set(found) != wanted:
                raise SystemExit(f"seeds.py: seed {seed} wrote no results for {', '.join(sorted(wanted))}; see "
                                 f"{folder}/seed{seed}.log")
            note = f"wall {time.perf_counter() - start:.0f}s"
        else:
            note = "read back"
        per_seed[seed] = found
        print(f"  seed {seed}: " + "  ".join(
            f"{model} val {'trained on it' if r['val_accuracy'] is None else format(r['val_accuracy'], '.4f')} test {r['test_accuracy']:.4f}"
            + (f" epochs {r['epochs']}" if "epochs" in r else "") for model, r in found.items())
              + f"  ({note})", flush=True)
    rows = []
    for model in next(iter(per_seed.values())):
        runs = [per_seed[s][model] for s in per_seed]
        rows.append([model, len(runs), spread([r["val_accuracy"] for r in runs]),
                     spread([r["test_accuracy"] for r in runs]),
                     spread([r["epochs"] for r in runs], 0) if "epochs" in runs[0] else "-",
                     spread([r["seconds"] for r in runs], 0)])
    text = outputs.format_table(["model", "seeds", "val_accuracy median [min-max]", "test_accuracy",
                                 "epochs", "train or search s"], rows)
    print()
    print(text)
    outputs.write_text(folder / "seeds.txt", " ".join(command) + "\n\n" + text + "\n")


if __name__ == "__main__":
    main()
