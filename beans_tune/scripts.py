"""The five commands' entry points (the top-level scripts and the console scripts call them), and
the flow the two training commands share: flags, one model (or the baseline and the BN model with
--compare), one reading of the test split, outputs and the table.

    python train_bn.py --data-dir ../shared/beans --compare      # or: beans-train-bn ...
"""

import argparse
import dataclasses
import statistics
from pathlib import Path

from . import cli, cnn, images, outputs, tensorboard_log, training
from .hparams import UsageError
from .tuning import methods, run


def training_parser(prog, description, compare=False):
    parser = cli.ArgumentParser(prog=prog, description=description)
    cli.add_run_flags(parser)
    if compare:
        parser.add_argument("--compare", action="store_true",
                            help="also train the baseline (no BN) with the same hyperparameters and seed")
        parser.add_argument("--seeds", type=cli.number(int, 1, 100), default=1, metavar="N",
                            help="with --compare: both models for each of the seeds SEED to SEED+N-1, then BN's "
                                 "gain over the baseline per seed and its median [min-max] (default: 1, range "
                                 "[1, 100]): a seed moves a training by points, the machine too")
    cli.add_hparam_flags(parser, exclude=("batch_norm",) if compare else ("batch_norm", "bn_momentum"))
    return parser


def parse(argv, script, batch_norm):
    """The flags and the hyperparameters they give; every check that needs no data (UsageError,
    or argparse's SystemExit 2)."""
    parser = training_parser(f"{script}.py", f"Train the beans CNN {'with' if batch_norm else 'without'} "
                                             "BatchNormalization.", compare=batch_norm)
    args = parser.parse_args(argv)
    cli.check_run_args(args)
    if getattr(args, "seeds", 1) > 1 and not args.compare:
        raise UsageError("--seeds goes with --compare (it measures BN's gain over the baseline)")
    if getattr(args, "seeds", 1) > 1 and args.seed + args.seeds - 1 >= 2**32:
        raise UsageError(f"--seed {args.seed} with --seeds {args.seeds} runs past the last seed, 2**32 - 1")
    return args, cli.hparams_from_args(args, batch_norm=batch_norm)


def run_training(argv, script, batch_norm):
    """Parses flags, trains one model (or baseline and BN with --compare), then reads the test
    split once, evaluates each final model on it, writes the outputs and prints the table."""
    args, hp = parse(argv, script, batch_norm)
    compare = getattr(args, "compare", False)
    runs = {"baseline": dataclasses.replace(hp, batch_norm=False), "bn": hp} if compare else {
        "bn" if batch_norm else "baseline": hp}
    beans = images.Beans(args.data_dir, image_size=args.image_size, limit=args.limit, seed=args.seed)
    out = Path(args.out) if args.out else cli.default_out(script)
    with outputs.output_folder(out):  # refused now, not after the training it would lose
        if getattr(args, "seeds", 1) == 1:
            train_and_report(args, script, hp, runs, beans, out, compare)
            return
        tests = {}
        for seed in range(args.seed, args.seed + args.seeds):
            print(f"\n===== seed {seed} ({seed - args.seed + 1} of {args.seeds})", flush=True)
            tests[seed] = train_and_report(argparse.Namespace(**{**vars(args), "seed": seed}), script, hp, runs,
                                           beans, out / f"seed-{seed}", compare)
        print(f"\n{format_gain(tests, len(beans.test))}")


def format_gain(tests, images):
    """Each seed's test accuracies and BN's gain over the baseline, then the gain's median [min-max]."""
    gains = {seed: acc["bn"] - acc["baseline"] for seed, acc in tests.items()}
    rows = [[seed, f"{acc['baseline']:.4f}", f"{acc['bn']:.4f}", f"{gains[seed]:+.4f}"] for seed, acc in tests.items()]
    ordered = sorted(gains.values())
    won = sum(g > 0 for g in ordered)
    return (outputs.format_table(["seed", "baseline test", "bn test", "bn - baseline"], rows) +
            f"\nBN's gain over the baseline on the test split ({images} images), {len(gains)} seeds: median "
            f"{statistics.median(ordered):+.4f} [{ordered[0]:+.4f}, {ordered[-1]:+.4f}]; BN higher on {won} of "
            f"{len(gains)}")


def train_and_report(args, script, hp, runs, beans, out, compare):
    prog = f"{script}.py"
    train_split, val_split = beans.train, beans.validation
    cli.print_config(f"{prog}: resolved configuration", {
        "data": beans.source, "image size": args.image_size, "seed": args.seed, "out": out,
        "models": ", ".join(runs), **hp.to_dict()})
    print("\n".join(beans.describe()), flush=True)

    results = {}
    for name, run_hp in runs.items():
        print(f"\n[{name}] training (batch_norm={run_hp.batch_norm})", flush=True)
        results[name] = training.train(run_hp, train_split, val_split, seed=args.seed,
                                     log=lambda line: print(line, flush=True))
    test = beans.test  # read once, after all training, by the final models
    rows = []
    for name, result in results.items():
        result.test_accuracy = training.evaluate(result.model, test)
        folder = out / name if compare else out
        outputs.write_json(folder / "metrics.json", {
            "script": script, "model": name, "hparams": runs[name].to_dict(),
            "image_size": args.image_size, "seed": args.seed, "data": beans.source, "limit": args.limit,
            "classes": list(beans.classes),
            "val_accuracy": result.val_accuracy, "test_accuracy": result.test_accuracy,
            "epochs": result.epochs, "train_seconds": round(result.seconds, 2), "status": result.status,
        })
        outputs.write_history_csv(folder / "history.csv", result.history)
        outputs.save_model(folder / "model.keras", cnn.for_raw_images(result.model, args.image_size))
        rows.append((name, outputs.accuracy_with_se(result.val_accuracy, len(val_split)),
                     outputs.accuracy_with_se(result.test_accuracy, len(test)), result.epochs, f"{result.seconds:.1f}"))
    outputs.save_figure(out / "curves.png", outputs.plot_curves({n: r.history for n, r in results.items()}))
    if args.tensorboard:  # last: a failure here is a warning, the results above are kept
        for name, result in results.items():
            tensorboard_log.guarded(prog, lambda: tensorboard_log.write_curves(
                out / tensorboard_log.FOLDER / name, result.history))
    print()
    print(outputs.format_table(["model", "val_accuracy ± se", "test_accuracy ± se", "epochs", "train_s"], rows))
    print(f"(± one standard error over the {len(val_split)} validation and {len(test)} test images; a seed moves a "
          "training too: experiments/seeds.py, experiments/resplit.py)")
    print(f"\nwrote {out}/")
    return {name: result.test_accuracy for name, result in results.items()}


def train_baseline(argv=None):
    """train_baseline.py: the CNN without BatchNormalization."""
    return cli.run_cli(lambda a: run_training(a, "train_baseline", batch_norm=False), argv, "train_baseline.py")


def train_bn(argv=None):
    """train_bn.py: the CNN with BatchNormalization; --compare trains the baseline beside it."""
    return cli.run_cli(lambda a: run_training(a, "train_bn", batch_norm=True), argv, "train_bn.py")


def tune_grid(argv=None):
    """tune_grid.py: grid search."""
    return tune(methods.Grid(), argv)


def tune_random(argv=None):
    """tune_random.py: random search."""
    return tune(methods.Random(), argv)


def tune_bayes(argv=None):
    """tune_bayes.py: Bayesian optimization."""
    return tune(methods.Bayes(), argv)


def tune(method, argv):
    return cli.run_cli(lambda a: run.run(a, method), argv, f"{method.script}.py")
