"""Benchmark (not a test): which trial score picks the configurations that test best, on resplits.

Measured on resplits, never on the canonical test split.

On each resplit (bench/resplit.py's, numbers >= 1) the same N configurations, drawn from the
random search's default ranges, are trained with S seeds each on the train split, the validation
split scored after every epoch; every training's model is then scored on that resplit's test
split. With --cv K each configuration is also trained K times over K folds of train +
validation, as `tune_grid.py --cv K` trains it. From those trainings, for each way of scoring a
trial, the bench picks a configuration as a search would and reads what the pick is worth:

    best epoch   the best epoch's validation accuracy (the searches' default, --score best-epoch)
    last 5       the mean validation accuracy over the last 5 epochs (--score last-5)
    last epoch   the last epoch's validation accuracy
    min loss     the lowest validation loss (lower is better)
    last 5 loss  the mean validation loss over the last 5 epochs
    S seeds      the mean over S seeds of the best epoch, or of the last 5 (tune_grid.py --repeats);
                 read against the same trainings that chose, which flatters it
    K-fold       the mean accuracy over K folds of train + validation (tune_grid.py --cv)

A pick is worth the test accuracy of the picked configuration: with the seed of the trial that
won (a final model that repeats the winning trial) and averaged over the other seeds (a final
model with a seed of its own). The oracle picks by that test accuracy itself, as no search can;
'any' is the mean over all configurations, what a pick at random is worth.

    python bench/selection.py --data-dir ../shared/beans --resplits 3 --first 1 --configs 8 --seeds 2 --cv 3
    # the same work in two processes of one TensorFlow thread each (2 cores):
    python bench/selection.py ... --threads 1 --shard 1/2 & python bench/selection.py ... --threads 1 --shard 2/2

Every training is appended to OUT/trainings.jsonl as it ends, so an interrupted bench resumes
where it stopped. The tables go to stdout and OUT/selection.txt.
"""

import contextlib
import dataclasses
import hashlib
import json
import math
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent), str(HERE)]

import cli  # noqa: E402
import common  # noqa: E402
import outputs  # noqa: E402
import resplit  # noqa: E402
from tuning import scoring  # noqa: E402
from tuning.scoring import LAST  # noqa: E402
from tuning.space import DEFAULT_RANGES, TRIAL_DEFAULTS, build_space  # noqa: E402

SEARCHED = ("learning_rate", "layers", "units", "batch_size")  # the random search's default ranges


def regime(epochs):
    """What every training of the bench shares besides the searched values: the searches' trials,
    `epochs` long, the cosine schedule run to its end."""
    return {**TRIAL_DEFAULTS, "epochs": epochs, "patience": epochs}


def configurations(n, seed=0):
    """`n` configurations drawn as tune_random.py draws them from its default ranges."""
    from sklearn.model_selection import ParameterSampler

    dims, _ = build_space({name: DEFAULT_RANGES[name] for name in SEARCHED}, {}, allow_range=True)
    sampler = ParameterSampler({d.name: d.scipy() for d in dims}, n_iter=n, random_state=seed)
    return [{k: (v.item() if isinstance(v, np.generic) else v) for k, v in p.items()} for p in sampler]


# --------------------------------------------------------------------------------------
# Scores of one training's history, and the picks they make
# --------------------------------------------------------------------------------------


def _finite(values):
    return [v for v in values if v is not None and math.isfinite(v)]


SCORES = {  # name -> history -> score (higher is better); NaN when the training has none
    "best epoch": scoring.best_epoch,   # the searches' --score options, as they compute them
    f"last {LAST}": scoring.last_epochs,
    "last epoch": lambda h: h["val_accuracy"][-1] if h["val_accuracy"] else math.nan,
    "min loss": lambda h: -min(_finite(h["val_loss"]), default=math.nan),
    f"last {LAST} loss": lambda h: -float(np.mean(h["val_loss"][-LAST:])) if h["val_loss"] else math.nan,
}


def pick(scores):
    """The index of the best finite score, the first of a tie (as the searches rank); None
    when no score is finite."""
    best = None
    for i, score in enumerate(scores):
        if math.isfinite(score) and (best is None or score > scores[best]):
            best = i
    return best


def evaluate_picks(records, configs, seeds, cv):
    """{score name: [(resplit, seed or None, picked config, same-seed test, other-seeds test)]}
    and {resplit: per-config mean test accuracy}."""
    by = {}
    for r in records:
        by[(r["resplit"], r["config"], r["fold"], r["seed"])] = r
    resplits = sorted({r["resplit"] for r in records})
    truth, events = {}, {}
    for k in resplits:
        test = np.array([[by[(k, c, "validation", s)]["test_accuracy"] if (k, c, "validation", s) in by else np.nan
                          for s in seeds] for c in range(len(configs))])
        if np.isnan(test).any():
            continue  # a resplit not finished: no picks on it
        truth[k] = test.mean(axis=1)
        for name, score in SCORES.items():
            for j, s in enumerate(seeds):
                chosen = pick([score(by[(k, c, "validation", s)]["history"]) for c in range(len(configs))])
                if chosen is None:  # no configuration has a score: no pick
                    continue
                others = [i for i in range(len(seeds)) if i != j]
                events.setdefault(name, []).append(
                    (k, s, chosen, test[chosen, j], float(test[chosen, others].mean()) if others else math.nan))
        if len(seeds) > 1:
            for name in ("best epoch", f"last {LAST}"):
                score = SCORES[name]
                chosen = pick([float(np.mean([score(by[(k, c, "validation", s)]["history"]) for s in seeds]))
                               for c in range(len(configs))])
                if chosen is None:
                    continue
                events.setdefault(f"{len(seeds)} seeds, {name}", []).append(
                    (k, None, chosen, math.nan, float(truth[k][chosen])))
        if cv:
            folds = [[by.get((k, c, f"cv{f}", seeds[0])) for f in range(1, cv + 1)] for c in range(len(configs))]
            if all(r is not None for row in folds for r in row):
                chosen = pick([float(np.mean([r["fold_accuracy"] for r in row])) for row in folds])
                if chosen is not None:
                    events.setdefault(f"{cv}-fold", []).append((k, None, chosen, math.nan, float(truth[k][chosen])))
        events.setdefault("oracle", []).append((k, None, int(np.argmax(truth[k])), math.nan, float(truth[k].max())))
        events.setdefault("any", []).append((k, None, None, math.nan, float(truth[k].mean())))
    return events, truth


def table(events, truth, seeds, cv):
    """One row per score: trainings per configuration, the picked configuration's test accuracy
    with another seed (mean [min-max] over picks), with the winning trial's own seed, and the
    points lost against the oracle."""
    cost = {name: 1 for name in SCORES}
    cost.update({f"{len(seeds)} seeds, best epoch": len(seeds), f"{len(seeds)} seeds, last {LAST}": len(seeds),
                 f"{cv}-fold": cv, "oracle": "-", "any": "-"})
    rows = []
    for name, picks in events.items():
        other = [p[4] for p in picks]
        same = _finite([p[3] for p in picks])
        regret = [truth[p[0]].max() - p[4] for p in picks]
        rows.append([name, cost.get(name, "-"), len(picks), _spread(other),
                     _spread(same) if same else "-", f"{np.mean(regret):.4f}"])
    return outputs.format_table(
        ["score", "trainings per config", "picks", "test of the pick, other seeds: mean [min-max]",
         "same seed as the winning trial", "lost vs oracle"], rows)


def _spread(values):
    return f"{np.mean(values):.4f} [{min(values):.4f}-{max(values):.4f}]"


# --------------------------------------------------------------------------------------
# The trainings
# --------------------------------------------------------------------------------------


def done_records(path):
    if not path.exists():
        return []
    records = []
    for line in path.read_text().splitlines():
        with contextlib.suppress(ValueError):
            records.append(json.loads(line))
    return records


def append(path, record):
    """One line, under a lock: two benches may share an --out, each given its own resplits."""
    import fcntl

    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        handle.write(json.dumps(record) + "\n")
        handle.flush()


def folds_of(train, validation, k, seed):
    """K stratified folds of train + validation: [(fit, early-stopping tenth, scored fold)], as
    tune_grid.py --cv K trains them."""
    from sklearn.model_selection import StratifiedKFold
    from tuning.runner import _early_stopping_split

    x, y = np.concatenate([train.x, validation.x]), np.concatenate([train.y, validation.y])
    found = []
    for rest, fold in StratifiedKFold(k, shuffle=True, random_state=seed).split(x, y):
        fit, stop = _early_stopping_split(common.Split(x[rest], y[rest], classes=train.classes), None, seed)
        found.append((fit, stop, common.Split(x[fold], y[fold], classes=train.classes)))
    return found


def main(argv=None):
    return cli.run_cli(run, argv, "selection.py")


def run(argv):
    parser = cli.ArgumentParser(prog="selection.py", description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=None, help=f"the labelled images (default: ${common.DATA_ENV})")
    parser.add_argument("--resplits", type=cli.number(int, 1, 100), default=3, metavar="K",
                        help="how many resplits (default: 3)")
    parser.add_argument("--first", type=cli.number(int, 1, 10**6), default=1, metavar="N",
                        help="the first resplit (>= 1: the canonical split, 0, is not used)")
    parser.add_argument("--configs", type=cli.number(int, 2, 100), default=8, metavar="N",
                        help="configurations drawn from the random search's default ranges (default: 8)")
    parser.add_argument("--seeds", type=cli.number(int, 2, 20), default=2, metavar="S",
                        help="seeds per configuration and resplit (default: 2; a pick is read with another seed)")
    parser.add_argument("--cv", type=cli.number(int, 2, 20), default=None, metavar="K",
                        help="also K folds of train + validation per configuration (default: none)")
    parser.add_argument("--epochs", type=cli.number(int, 1, 1000), default=40,
                        help="each training's epochs, its cosine schedule run to the end (default: 40)")
    parser.add_argument("--image-size", type=cli.number(int, 8, 512), default=64, help="(default: 64)")
    parser.add_argument("--threads", type=cli.number(int, 1, 256), default=None, metavar="N",
                        help="TensorFlow threads (default: TensorFlow's choice); two benches of one thread each "
                             "(--shard) keep 2 cores busier than one of two threads")
    parser.add_argument("--shard", default="1/1", metavar="I/N",
                        help="train only every N-th training, starting at the I-th (default: 1/1, all): N benches "
                             "with --shard 1/N .. N/N into one --out share the work")
    parser.add_argument("--out", default=None, help="default: runs/bench-selection-<hash of the setup>")
    args = parser.parse_args(argv)
    try:
        shard, shards = (int(part) for part in args.shard.split("/"))
        if not 1 <= shard <= shards:
            raise ValueError
    except ValueError:
        raise common.UsageError(f"--shard: expected I/N with 1 <= I <= N, got {args.shard!r}") from None
    if empty := cli.empty_folder_flag(args):
        raise common.UsageError(empty)
    data = common.resolve_data_dir(args.data_dir)
    if data is None:
        raise common.UsageError(f"give --data-dir DIR (or set {common.DATA_ENV})")
    configs = configurations(args.configs)
    seeds = list(range(args.seeds))
    setup = {"data": str(data.resolve()), "configs": configs, "epochs": args.epochs, "image_size": args.image_size,
             "regime": regime(args.epochs)}
    digest = hashlib.sha256(json.dumps(setup, sort_keys=True).encode()).hexdigest()[:8]
    out = Path(args.out or f"runs/bench-selection-{digest}")
    if out.exists() and not out.is_dir():
        raise common.UsageError(f"--out must be a folder, {out} is a file")
    if (out / "setup.json").exists() and json.loads((out / "setup.json").read_text()) != setup:
        raise common.UsageError(f"--out: {out} holds another selection bench (other data, configurations or epochs)")
    images = resplit.labelled_images(data)
    numbers = list(range(args.first, args.first + args.resplits))
    with outputs.output_folder(out):
        outputs.write_json(out / "setup.json", setup)
        path = out / "trainings.jsonl"
        records = done_records(path)
        done = {(r["resplit"], r["config"], r["fold"], r["seed"]) for r in records}
        base = common.HParams(**regime(args.epochs))
        if args.threads:
            from tuning.runner import limit_threads

            limit_threads(args.threads)
        print(f"selection.py: {len(configs)} configurations x {len(seeds)} seeds"
              + (f" + {args.cv}-fold" if args.cv else "") + f" on resplits {numbers[0]}-{numbers[-1]}, "
              f"{args.epochs} epochs each; into {out}/", flush=True)
        for i, c in enumerate(configs):
            print(f"  config {i}: " + " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                                               for k, v in c.items()), flush=True)
        # every resplit's seeds first, then the folds: an interrupted bench has whole resplits to read
        jobs = [(k, c, "validation", s) for k in numbers for s in seeds for c in range(len(configs))]
        if args.cv:
            jobs += [(k, c, f"cv{f}", seeds[0]) for k in numbers for f in range(1, args.cv + 1)
                     for c in range(len(configs))]
        data_of, folds_by = {}, {}
        for k, c, fold, s in jobs[shard - 1::shards]:
            if (k, c, fold, s) in done:
                continue
            if k not in data_of:
                data_of[k] = common.Beans(resplit.make_resplit(out / "splits" / f"resplit-{k}", images, k,
                                                               data.resolve()), image_size=args.image_size)
            beans = data_of[k]
            hp = dataclasses.replace(base, **configs[c])
            start = time.perf_counter()
            if fold == "validation":
                result = common.train(hp, beans.train, beans.validation, seed=s, log=None, keep_best=False)
                scored = {"test_accuracy": common.evaluate(result.model, beans.test)}
            else:
                if k not in folds_by:
                    folds_by[k] = folds_of(beans.train, beans.validation, args.cv, seeds[0])
                fit, stop, held = folds_by[k][int(fold[2:]) - 1]
                result = common.train(hp, fit, stop, seed=s, log=None, keep_best=False)
                scored = {"fold_accuracy": common.evaluate(result.model, held)}
            record = {"resplit": k, "config": c, "fold": fold, "seed": s, "params": configs[c],
                      "status": result.status, "history": result.history, **scored,
                      "seconds": round(time.perf_counter() - start, 1)}
            append(path, record)
            records.append(record)
            print(f"  resplit {k} config {c} {fold} seed {s}: " + "  ".join(f"{n} {v:.4f}" for n, v in scored.items())
                  + f"  last-5 val {SCORES[f'last {LAST}'](result.history):.4f}  ({record['seconds']:.0f}s)",
                  flush=True)
        records = done_records(path)  # with those of another bench sharing the folder
        events, truth = evaluate_picks(records, configs, seeds, args.cv)
        text = table(events, truth, seeds, args.cv)
        per_config = outputs.format_table(
            ["config", *(f"resplit {k} test (mean of {len(seeds)} seeds)" for k in truth)],
            [[i, *(f"{truth[k][i]:.4f}" for k in truth)] for i in range(len(configs))])
        print()
        print(text)
        print()
        print(per_config)
        outputs.write_text(out / "selection.txt", text + "\n\n" + per_config + "\n")


if __name__ == "__main__":
    sys.exit(main())
