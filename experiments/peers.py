"""Benchmark (not a test): our default random search against the tools a user would pick
instead, KerasTuner (RandomSearch, BayesianOptimization, Hyperband) and Optuna (TPE, with and
without its MedianPruner), on the same resplits, model family, space and trial budget.

    pip install -r experiments/requirements-peers.txt
    python experiments/peers.py --data-dir ../shared/beans --resplits 3 --first 11 --out runs/peers \\
        --methods kt-random,kt-bayes,kt-hyperband,optuna-tpe,optuna-tpe-median \\
        --ours 'tune_random.py=runs/resplit-random/main' --ours 'tune_random.py --prune=runs/resplit-prune/main'

What is the same for every method:
- the data: resplit k of experiments/resplit.py (the same folder of links), seed k;
- the model and its training: beans_tune's BN CNN (cnn.build_model, cnn.make_optimizer) with the
  searches' trial settings (TRIAL_DEFAULTS: BN, augmented, 20 epochs) and the tf.data input of
  training.make_dataset; a trial is scored by its best epoch's validation accuracy;
- the space: tune_random.py's default, the lecture's five (DEFAULT_RANGES), in each tool's own
  words (log-uniform learning rate, decay and units; batch size 16, 32 or 64);
- the budget: 8 trials of 20 epochs (Hyperband: max_epochs 20, one iteration: its own count);
- the pick: retrained by the same final training as ours (tuning.final.train_final: up to 60
  epochs, patience 20, the best epoch on validation kept), then tested once.
Each tool is used as its documentation shows, with its defaults otherwise (Optuna's TPE samples
its first 10 trials at random: with 8 trials it is random search; its MedianPruner starts after
5 finished trials).

Our searches are not run here: `--ours LABEL=FOLDER` reads a resplit.py run's folder (resplit-k/
with best.json, results.csv, histories.jsonl; resplit-k.wall.json). Each peer run is written to
OUT/<method>/resplit-k.json when it ends (a killed run starts that one again). The table goes to
stdout and OUT/peers.txt, the figure (best validation accuracy so far against epochs trained and
against seconds into the search, median over resplits) to OUT/peers.png.
"""

import argparse
import csv
import dataclasses
import json
import math
import shutil
import statistics
import sys
import time
from pathlib import Path

import resplit  # experiments/resplit.py, beside this file
from beans_tune import cli, cnn, images, outputs, training
from beans_tune.hparams import HParams, UsageError
from beans_tune.images import resolve_data_dir
from beans_tune.tuning.final import AUTO, FinalBudget, train_final
from beans_tune.tuning.space import DEFAULT_RANGES, FINAL_EPOCHS, TRIAL_DEFAULTS
from beans_tune.tuning.store import Trial

METHODS = ("kt-random", "kt-bayes", "kt-hyperband", "optuna-tpe", "optuna-tpe-median")
TRIALS, EPOCHS = 8, TRIAL_DEFAULTS["epochs"]
BATCH_SIZES = (16, 32, 64)  # DEFAULT_RANGES' 16:64 on its power-of-two scale
BASE = HParams(**{k: v for k, v in DEFAULT_RANGES.items() if ":" not in str(v)})  # the trial settings
FINAL = FinalBudget(epochs=FINAL_EPOCHS, patience=20, cosine_to_end=True, data=AUTO)  # tune_random.py's


def bounds(name, cast=float):
    low, high = DEFAULT_RANGES[name].split(":")
    return cast(float(low)), cast(float(high))


class Recorder:
    """Every epoch's validation accuracy and when it ended, and the seconds spent in fit."""

    def __init__(self):
        self.start, self.epochs, self.fit_seconds = time.perf_counter(), [], 0.0

    def callback(self):
        import keras

        recorder = self

        class Record(keras.callbacks.Callback):
            def on_train_begin(self, logs=None):
                self.began = time.perf_counter()

            def on_epoch_end(self, epoch, logs=None):
                recorder.epochs.append([float((logs or {}).get("val_accuracy", math.nan)),
                                        round(time.perf_counter() - recorder.start, 2)])

            def on_train_end(self, logs=None):
                recorder.fit_seconds += time.perf_counter() - self.began

        return Record()


def compiled(params, beans, seed):
    """(HParams, compiled model) of one trial, as tuning's trials build it (training.train)."""
    import keras

    hp = dataclasses.replace(BASE, **params)
    keras.backend.clear_session()
    keras.utils.set_random_seed(seed)
    model = cnn.build_model(hp, beans.image_size, num_classes=beans.train.num_classes, seed=seed)
    steps = math.ceil(len(beans.train) / hp.batch_size)
    model.compile(optimizer=cnn.make_optimizer(hp, steps), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    return hp, model


def data_for(hp, beans, seed):
    return (training.make_dataset(beans.train, hp.batch_size, seed=seed, training=True, augment=hp.augment),
            training.make_dataset(beans.validation, hp.batch_size))


def keras_tuner_search(method, beans, seed, recorder, workdir):
    import keras_tuner as kt

    class BeansHyperModel(kt.HyperModel):
        def build(self, hp):
            lr, decay, units = bounds("learning_rate"), bounds("decay"), bounds("units", int)
            params = {"learning_rate": hp.Float("learning_rate", *lr, sampling="log"),
                      "layers": hp.Int("layers", *bounds("layers", int)),
                      "units": hp.Int("units", *units, sampling="log"),
                      "decay": hp.Float("decay", *decay, sampling="log"),
                      "batch_size": hp.Choice("batch_size", list(BATCH_SIZES))}
            return compiled(params, beans, seed)[1]

        def fit(self, hp, model, *args, callbacks=(), **kwargs):
            train, val = data_for(dataclasses.replace(BASE, batch_size=hp.get("batch_size")), beans, seed)
            return model.fit(train, validation_data=val, callbacks=[*callbacks, recorder.callback()], **kwargs)

    common = {"objective": "val_accuracy", "seed": seed, "directory": str(workdir), "project_name": method,
              "overwrite": True}
    if method == "kt-random":
        tuner = kt.RandomSearch(BeansHyperModel(), max_trials=TRIALS, **common)
    elif method == "kt-bayes":
        tuner = kt.BayesianOptimization(BeansHyperModel(), max_trials=TRIALS, **common)
    else:
        tuner = kt.Hyperband(BeansHyperModel(), max_epochs=EPOCHS, factor=3, hyperband_iterations=1, **common)
    tuner.search(**({} if method == "kt-hyperband" else {"epochs": EPOCHS}), verbose=0)
    best = tuner.oracle.get_best_trials(1)[0]
    return best.hyperparameters.values, float(best.score)


def optuna_search(method, beans, seed, recorder):
    import optuna
    from optuna_integration import TFKerasPruningCallback

    def objective(trial):
        params = {"learning_rate": trial.suggest_float("learning_rate", *bounds("learning_rate"), log=True),
                  "layers": trial.suggest_int("layers", *bounds("layers", int)),
                  "units": trial.suggest_int("units", *bounds("units", int), log=True),
                  "decay": trial.suggest_float("decay", *bounds("decay"), log=True),
                  "batch_size": trial.suggest_categorical("batch_size", list(BATCH_SIZES))}
        hp, model = compiled(params, beans, seed)
        train, val = data_for(hp, beans, seed)
        prune = [TFKerasPruningCallback(trial, "val_accuracy")] if method == "optuna-tpe-median" else []
        history = model.fit(train, validation_data=val, epochs=EPOCHS, verbose=0,
                            callbacks=[recorder.callback(), *prune])
        return max(history.history["val_accuracy"])

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    pruner = optuna.pruners.MedianPruner() if method == "optuna-tpe-median" else optuna.pruners.NopPruner()
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=seed), pruner=pruner)
    study.optimize(objective, n_trials=TRIALS)
    return study.best_params, float(study.best_value)


def run_peer(method, folder, k, path):
    """One peer search on resplit k, its pick retrained and tested once; written to `path`."""
    beans = images.Beans(folder, seed=k)
    recorder = Recorder()
    if method.startswith("kt-"):
        workdir = path.parent / f".{path.stem}-keras-tuner"
        params, val = keras_tuner_search(method, beans, k, recorder, workdir)
        shutil.rmtree(workdir, ignore_errors=True)
    else:
        params, val = optuna_search(method, beans, k, recorder)
    search_seconds = time.perf_counter() - recorder.start
    params = {n: params[n] for n in ("learning_rate", "layers", "units", "decay", "batch_size")}
    final = train_final(beans, BASE, Trial(params, val, math.nan, 0.0), FINAL, k, names=list(params))
    result = {"method": method, "resplit": k, "params": params, "val_accuracy": val,
              "test_accuracy": final.test_accuracy, "epochs": len(recorder.epochs),
              "search_seconds": round(search_seconds, 1), "fit_seconds": round(recorder.fit_seconds, 1),
              "wall_seconds": round(time.perf_counter() - recorder.start, 1), "curve": recorder.epochs}
    outputs.write_json(path, result)
    return result


def read_ours(label, folder, k):
    """One of our searches on resplit k, as resplit.py left it, in run_peer's form; None if absent."""
    run = Path(folder) / f"resplit-{k}"
    if not (run / "best.json").exists():
        return None
    best = json.loads((run / "best.json").read_text())
    with (run / "results.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    curves = {}
    for line in (run / "histories.jsonl").read_text().splitlines():
        entry = json.loads(line)
        curves[int(entry["trial"])] = entry["history"]["val_accuracy"]
    curve, clock = [], 0.0
    for row in rows:  # a trial's fit time spread evenly over its epochs
        values = curves.get(int(row["trial"]), [])
        for value in values:
            clock += float(row["fit_seconds"]) / max(len(values), 1)
            curve.append([value, round(clock, 2)])
    return {"method": label, "resplit": k, "params": best["params"], "val_accuracy": best["val_accuracy"],
            "test_accuracy": best["test_accuracy"], "epochs": sum(int(r.get("epochs_run", r["epochs"])) for r in rows),
            "search_seconds": best["search_seconds"], "fit_seconds": best["fit_seconds"],
            "wall_seconds": resplit.wall_of(Path(folder) / f"resplit-{k}.wall.json"), "curve": curve}


def minutes(seconds):
    return "-" if not math.isfinite(seconds) else f"{seconds / 60:.1f}"


def table(results, numbers):
    rows = []
    for method, found in results.items():
        found = [r for r in found if r is not None]
        if not found:
            continue
        overhead = [r["search_seconds"] - r["fit_seconds"] for r in found]
        rows.append([method, len(found), resplit.spread([r["test_accuracy"] for r in found]),
                     " ".join(f"{r['test_accuracy']:.4f}" for r in found),
                     resplit.spread([float(r["epochs"]) for r in found], 0),
                     minutes(statistics.median(r["wall_seconds"] for r in found)),
                     minutes(statistics.median(r["fit_seconds"] for r in found)),
                     minutes(statistics.median(overhead))])
    head = ["method", "resplits", "test accuracy, median [min-max]", "each resplit", "epochs trained",
            "wall min", "fit min", "overhead min"]
    return (outputs.format_table(head, rows) +
            f"\n{'resplit ' + str(numbers[0]) if len(numbers) == 1 else f'resplits {numbers[0]}-{numbers[-1]}'}"
            ", seed = resplit; wall: search and final model; fit: the search's "
            "trainings; overhead: the search's time outside them (proposing, building, bookkeeping); minutes are medians")


def best_so_far(curve):
    """[(epochs trained, seconds, best validation accuracy so far)] of a run's per-epoch curve."""
    best, points = -math.inf, []
    for epoch, (value, seconds) in enumerate(curve, 1):
        best = max(best, value) if math.isfinite(value) else best
        points.append((epoch, seconds, best))
    return points


def at(run, along, x):
    """A run's best so far at x epochs (along 0) or seconds (along 1): its last point at or before x;
    before its first point, its first value (every run starts from one epoch)."""
    found = [p[2] for p in run if p[along] <= x]
    return found[-1] if found else run[0][2]


def figure(results, path):
    """Best validation accuracy so far against epochs trained and against seconds, median over resplits."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    for colour, (method, found) in enumerate(results.items()):
        found = [r for r in found if r is not None and r["curve"]]
        for ax, along in zip(axes, (0, 1)):  # x: epochs trained, or seconds
            runs = [best_so_far(r["curve"]) for r in found]
            xs = sorted({x[along] for run in runs for x in run})
            ys = [statistics.median(at(run, along, x) for run in runs) for x in xs]
            ax.step(xs, ys, where="post", color=f"C{colour}", label=f"{method} ({len(found)} resplits)")
    axes[0].set_xlabel("epochs trained")
    axes[1].set_xlabel("seconds into the search")
    for ax in axes:
        ax.set_ylabel("best validation accuracy so far (median over resplits)")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    outputs.save_figure(path, fig)


def parse(argv):
    parser = argparse.ArgumentParser(prog="peers.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", default=None, help="the labelled images (default: $BEANS_DATA_DIR)")
    parser.add_argument("--resplits", type=cli.number(int, 1, 100), default=3)
    parser.add_argument("--first", type=cli.number(int, 1, 10**6), default=11)
    parser.add_argument("--out", required=True, help="folder of the runs, the table and the figure")
    parser.add_argument("--methods", default="", help=f"peers to run, comma-separated, of {', '.join(METHODS)}")
    parser.add_argument("--ours", action="append", default=[], metavar="LABEL=FOLDER",
                        help="a resplit.py run folder of one of our searches, to read (repeatable)")
    args = parser.parse_args(argv)
    args.methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = [m for m in args.methods if m not in METHODS]
    if unknown:
        raise UsageError(f"--methods: unknown {', '.join(unknown)} (known: {', '.join(METHODS)})")
    ours = {}
    for item in args.ours:
        label, sep, folder = item.partition("=")
        if not sep or not Path(folder).is_dir():
            raise UsageError(f"--ours {item!r}: give LABEL=FOLDER, a resplit.py run folder")
        ours[label] = folder
    args.ours = ours
    data = resolve_data_dir(args.data_dir)
    if data is None:
        raise UsageError("--data-dir (or BEANS_DATA_DIR) is needed: the resplits are made from its images")
    return args, Path(data)


def run(argv):
    args, data = parse(argv)
    out = Path(args.out)
    numbers = list(range(args.first, args.first + args.resplits))
    results = {label: [read_ours(label, folder, k) for k in numbers] for label, folder in args.ours.items()}
    pending = [(m, k) for k in numbers for m in args.methods if not (out / m / f"resplit-{k}.json").exists()]
    if pending:
        labelled = resplit.labelled_images(data)
        for method, k in pending:
            folder = resplit.make_resplit(out / "splits" / f"resplit-{k}", labelled, k, data.resolve())
            print(f"peers.py: {method} on resplit {k}", flush=True)
            found = run_peer(method, folder, k, out / method / f"resplit-{k}.json")
            print(f"peers.py: {method} on resplit {k}: test {found['test_accuracy']:.4f}, {found['epochs']} epochs, "
                  f"{found['wall_seconds']:.0f}s", flush=True)
    for method in METHODS:
        paths = [out / method / f"resplit-{k}.json" for k in numbers]
        if any(p.exists() for p in paths):
            results[method] = [json.loads(p.read_text()) if p.exists() else None for p in paths]
    text = table(results, numbers)
    print(text)
    outputs.write_text(out / "peers.txt", text + "\n")
    figure(results, out / "peers.png")
    print(f"wrote {out / 'peers.txt'}, {out / 'peers.png'}")


def main(argv=None):
    return cli.run_cli(run, argv, "peers.py")


if __name__ == "__main__":
    sys.exit(main())
