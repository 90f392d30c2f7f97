"""A tuning script's whole run, in steps that return what the next one needs:

    parse -> prepare -> (claim the folder, resume?) -> search -> report -> final model -> figures

The method (tune_grid.py, tune_random.py, tune_bayes.py) brings its own flags, their checks, its
trial count, the settings that identify its search, and the search itself: a `Method`.
"""

import contextlib
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import cli
import common
import outputs
import tensorboard_log
from common import HPARAM_NAMES, HParams, UsageError

from . import execution as ex
from . import report, scoring, store
from .final import AUTO, FINAL_DATA, TRAIN_AND_VALIDATION, FinalBudget, final_model, format_best
from .evaluate import Evaluator
from .runner import Data, TrialOptions, limit_threads
from .searches import Problem
from .space import FINAL_EPOCHS, TRIAL_DEFAULTS, build_space


@dataclass(frozen=True)
class Method:
    """What distinguishes tune_grid, tune_random and tune_bayes."""

    script: str
    description: str
    allow_range: bool                 # takes lo:hi ranges, not only lists
    default_space: object             # (args) -> {name: spec}, before the user's flags
    add_flags: object                 # (parser) -> None
    count: object                     # (args, dims, base) -> trainings the search will run
    identity: object                  # (args) -> {setting: value} that define the search (resume)
    search: object                    # (problem, args) -> SearchOutput
    describe: object = field(default=lambda args: {"scoring": scoring.describe(args.score)})
    check_data: object = field(default=lambda args, train, validation: None)  # raises UsageError
    figures: tuple = ()               # names of the figures its search may draw, besides val_accuracy.png
    requested: object = None          # (args) -> trainings asked for (more than count: a small space)
    check: object = field(default=lambda args, dims, base: None)  # flag combinations; raises UsageError
    rung: object = field(default=lambda args: None)  # (args) -> the hyperparameter a halving rung sets


@dataclass(frozen=True)
class Setup:
    """Everything decided from the flags alone, before any data is read."""

    args: object
    dims: tuple
    base: HParams
    total: int
    out: Path
    rung: str = None  # successive halving: the hyperparameter each rung sets ("epochs")
    final: FinalBudget = FinalBudget()  # what the final model trains with beyond the best trial's values

    @property
    def names(self):
        return [d.name for d in self.dims]

    @property
    def columns(self):
        """The hyperparameters each training is stored and shown with: the searched ones, and a
        halving rung's epochs."""
        return [*self.names, *([self.rung] if self.rung else [])]


def tuning_parser(method):
    parser = cli.ArgumentParser(prog=f"{method.script}.py", description=method.description)
    cli.add_run_flags(parser)
    parser.add_argument("--n-jobs", type=cli.number(int, 1, 64), default=1,
                        help="trials run in N processes (default: 1, range [1, 64])")
    parser.add_argument("--top", type=cli.number(int, 1, 10**4), default=10,
                        help="rows in the ranked table (default: 10)")
    parser.add_argument("--trial-timeout", type=cli.number(float, 0, 10**6, low_open=True), default=None,
                        metavar="SECONDS", help="stop a trial running longer and record it as 'timeout' "
                                                "(default: none, range (0, 1e6])")
    parser.add_argument("--retry-failed", action="store_true",
                        help="on resume, train failed and timed-out trials again (diverged ones are results)")
    parser.add_argument("--scheduler", metavar="ADDRESS", default=None,
                        help="run the trials on an existing Dask cluster, e.g. tcp://127.0.0.1:8786 "
                             "(see README: Scaling out)")
    parser.add_argument("--connect-timeout", type=cli.number(float, 1, 3600), default=None, metavar="SECONDS",
                        help="with --scheduler: how long to wait for a worker, at start and whenever the "
                             f"cluster has none (default: {ex.CONNECT_TIMEOUT})")
    for name, what in (("ca-file", "the CA certificate"), ("cert", "this client's certificate"),
                       ("key", "this client's private key")):
        parser.add_argument(f"--tls-{name}", metavar="FILE", default=None,
                            help=f"with --scheduler tls://...: {what} (see README: Scaling out)")
    parser.add_argument("--threads-per-trial", type=cli.number(int, 1, 256), default=None, metavar="N",
                        help="TensorFlow threads per trial (default: cores / n-jobs for local "
                             "processes; TensorFlow's own choice otherwise)")
    parser.add_argument("--final-epochs", type=cli.number(int, 1, 1000), default=None, metavar="N",
                        help=f"train the best configuration for up to N epochs at the end (default: {FINAL_EPOCHS}, "
                             "unless --epochs is given); trials only rank configurations, the final model trains "
                             "longer")
    parser.add_argument("--final-patience", type=cli.number(int, 0, 1000), default=None, metavar="P",
                        help="the final model's patience, on the train split (default: --patience where given, else "
                             "20; with the cosine schedule, unless --patience is given, its epochs: the schedule "
                             "runs to its end)")
    parser.add_argument("--final-data", type=lambda text: text.strip().lower(), choices=FINAL_DATA, default=AUTO,
                        help="what the final model trains on: train, the best epoch on validation kept; "
                             "train+validation, the validation images too, all its epochs, the last kept (the "
                             "search ranks configurations as without it); or auto (default): train+validation "
                             "for a cosine schedule run to its end, train otherwise; any case")
    parser.add_argument("--score", type=lambda text: text.strip().lower(), choices=scoring.SCORES,
                        default=scoring.DEFAULT,
                        help=f"how a trial is scored on the validation split: {scoring.SCORES[0]} (its best epoch's "
                             f"accuracy) or {scoring.SCORES[1]} (the mean over its last {scoring.LAST} epochs) "
                             f"(default: {scoring.DEFAULT}; with --cv, each fold's accuracy)")
    parser.add_argument("--overwrite", action="store_true",
                        help="start afresh, whatever the --out folder holds")
    method.add_flags(parser)
    group = parser.add_argument_group(
        "hyperparameters", "each takes one value (fixed), a comma list (choices)"
        + (", or lo:hi (a range)" if method.allow_range else ""))
    for name in HPARAM_NAMES:
        shown = method.default_space(None).get(name, getattr(HParams(), name))
        if name == "decay" and method.default_space(None).get("schedule") == "cosine" and shown != 0:
            shown = f"{shown} with --schedule inverse-time; 0 with cosine (the default)"
        if name == "patience" and shown == TRIAL_DEFAULTS["epochs"]:
            shown = f"{shown}, the trials' epochs: with cosine one --epochs value sets it too"
        group.add_argument(cli.flag(name), default=None, metavar="SPEC", help=f"default: {shown}")
    return parser


def prepare(argv, method):
    """Parses and checks every flag; returns the Setup. Reads nothing but a --grid file."""
    args = tuning_parser(method).parse_args(argv)
    cli.check_run_args(args)
    if not args.scheduler and (args.tls_ca_file or args.tls_cert or args.tls_key):
        raise UsageError("--tls-ca-file, --tls-cert and --tls-key go with --scheduler tls://...")
    if not args.scheduler and args.connect_timeout is not None:
        raise UsageError("--connect-timeout goes with --scheduler")
    if args.final_data == TRAIN_AND_VALIDATION and args.final_patience is not None:
        raise UsageError("--final-patience has nothing to stop on with --final-data train+validation: "
                         "the final model trains all --final-epochs")
    if getattr(args, "cv", None) and args.score != scoring.DEFAULT:
        raise UsageError("--score ranks trials on the validation split; with --cv each fold's accuracy is the score")
    overrides = {n: getattr(args, n) for n in HPARAM_NAMES if getattr(args, n) is not None}
    space = method.default_space(args)  # reads a --grid file: once
    dims, fixed = build_space(trials_run_to_the_end(space, overrides), overrides, method.allow_range)
    base = HParams(**fixed)
    method.check(args, dims, base)
    if not dims:
        raise UsageError("nothing to search: every hyperparameter has a single value")
    out = Path(args.out) if args.out else cli.default_out(method.script)
    return Setup(args, tuple(dims), base, method.count(args, dims, base), out, method.rung(args),
                 final_budget(args, space, overrides, dims))


def trials_run_to_the_end(space, overrides):
    """The default trial patience is the default trial epochs (a cosine schedule run to its end);
    with the cosine schedule, one --epochs value the user gives becomes the trials' patience too,
    unless a flag or a grid file sets the patience (another schedule keeps early stopping)."""
    epochs = str(overrides.get("epochs", "")).strip()
    schedule = str(overrides.get("schedule", space.get("schedule", ""))).strip().lower()
    if (epochs and "," not in epochs and ":" not in epochs and "patience" not in overrides and schedule == "cosine"
            and space.get("patience") == TRIAL_DEFAULTS["patience"] == TRIAL_DEFAULTS["epochs"]):
        return {**space, "patience": epochs}
    return space


def final_budget(args, space, overrides, dims):
    """The final model's epochs and patience. Trials train on the searches' shorter budget
    (TRIAL_DEFAULTS) to rank configurations; unless a flag or a grid file set the trials' epochs,
    the model you keep trains for FINAL_EPOCHS, and never with less patience than its trial had
    nor than the training scripts'. --final-epochs and --final-patience set them whatever the
    trials had. Unless a flag or a grid file set the patience, a best configuration with the
    cosine schedule trains with patience = its epochs (decided in final.py, once the winner is
    known): early stopping would cut the schedule short of its low rates."""
    searched = {d.name for d in dims}
    longest = {"epochs": FINAL_EPOCHS, "patience": max(HParams().patience, TRIAL_DEFAULTS["patience"])}
    final = {name: longest[name] for name in ("epochs", "patience")
             if name not in overrides and name not in searched and space.get(name) == TRIAL_DEFAULTS[name]}
    if args.final_epochs:
        final["epochs"] = args.final_epochs
    if args.final_patience is not None:
        final["patience"] = args.final_patience
    # no flag or grid file set the patience: a cosine winner runs to the end
    return FinalBudget(**final, cosine_to_end=args.final_patience is None and "patience" in final,
                       data=args.final_data)


FINAL_DATA_SHOWN = {
    "train": "train, the best epoch on validation kept",
    TRAIN_AND_VALIDATION: "train + validation, all its epochs, the last kept",
    AUTO: "train + validation for a cosine schedule run to its end (all its epochs, the last kept), else train "
          "(the best epoch on validation kept)",
}


# Hyperparameters added after searches were first saved, at the value that trains as before they
# existed: left out of the manifest at that value, so that those searches still resume.
LATER_FIELDS = {"schedule": "inverse-time"}


def manifest(setup, method, beans):
    """What makes two runs the same search: resuming is allowed only when this matches exactly.
    Settings that change how, not what, trials train (--n-jobs, --trial-timeout, --scheduler)
    are not part of it."""
    args = setup.args
    data = str(beans.data_dir.resolve()) if beans.data_dir else beans.source
    fixed = {k: v for k, v in setup.base.to_dict().items() if LATER_FIELDS.get(k, ...) != v}
    return {"script": method.script, "space": {d.name: d.spec() for d in setup.dims},
            "fixed": fixed, "data": data, "image_size": beans.image_size,
            "limit": beans.limit, "seed": args.seed, "method": method.identity(args),
            # searches saved before --score ranked by the best epoch, and still resume
            **({"score": args.score} if args.score != "best-epoch" else {})}


def open_execution(args, stack):
    """Execution (where trials run) and TensorFlow threads per trial."""
    if args.scheduler:
        security = ex.tls_security(args.tls_ca_file, args.tls_cert, args.tls_key)
        timeout = args.connect_timeout or ex.CONNECT_TIMEOUT
        client = stack.enter_context(ex.connect(args.scheduler, timeout, security))
        n_jobs = args.n_jobs if args.n_jobs > 1 else max(sum(client.nthreads().values()), 1)
        return ex.Execution(n_jobs, client, patience=timeout), args.threads_per_trial
    threads = args.threads_per_trial
    if args.n_jobs > 1 and threads is None:
        threads = ex.default_threads(args.n_jobs)
    return ex.Execution(args.n_jobs), threads


def run(argv, method):
    """The whole run of a tuning script: flags, search, table, final model, files."""
    prog = f"{method.script}.py"
    setup = prepare(argv, method)
    args, out, names, columns = setup.args, setup.out, setup.names, setup.columns
    beans = common.Beans(args.data_dir, image_size=args.image_size, limit=args.limit, seed=args.seed)
    with contextlib.ExitStack() as stack:
        execution, threads = open_execution(args, stack)
        stack.enter_context(store.claim(out))
        the_manifest = manifest(setup, method, beans)
        resumed = store.open_search(out, the_manifest, args.overwrite, ("val_accuracy.png", *method.figures))
        trial_store = store.TrialStore(out / store.RESULTS, columns)
        done = trial_store.rows() if resumed else []
        finished = store.read_best(out, trial_store) if resumed else None
        board = (Board(prog, out / store.BOARD, setup.dims, [setup.rung] if setup.rung else [])
                 if args.tensorboard else None)
        if finished is not None:
            if args.retry_failed:
                raise UsageError(f"{out} holds a finished search, whose test score is final: --retry-failed "
                                 "applies to an unfinished one (--overwrite starts afresh)")
            if board:  # a search finished without --tensorboard gets its experiment now
                board.sync(trial_store)
            return show_finished(prog, setup, trial_store, finished)
        if threads and execution.in_this_process and not limit_threads(threads):
            print(f"{prog}: note: --threads-per-trial {threads} not applied: TensorFlow already runs in "
                  "this process", file=sys.stderr)
        train, validation = beans.train, beans.validation  # decoded here, after every check
        method.check_data(args, train, validation)
        wanted = method.requested(args) if method.requested else None
        if wanted is not None and setup.total < wanted:
            print(f"{prog}: note: the space holds fewer configurations than asked for; running "
                  f"{setup.total} trainings, not {wanted}", file=sys.stderr)
        store.write_manifest(out, the_manifest)
        cli.print_config(f"{prog}: resolved configuration", {
            "data": beans.source, "train / validation images": f"{len(train)} / {len(validation)}",
            "image size": args.image_size, "seed": args.seed, "out": out, **method.describe(args),
            "trainings": setup.total, "trials run in": execution.describe(),
            "parallel trials": execution.n_jobs if not threads else f"{execution.n_jobs} ({threads} threads each)",
            **({"trial timeout": f"{args.trial_timeout:g}s"} if args.trial_timeout else {}),
            "final model trains on": FINAL_DATA_SHOWN[setup.final.data],
            **{f"search {d.name}": d.describe() for d in setup.dims},
            **{k: v for k, v in setup.base.to_dict().items() if k not in names}})
        retried = announce_resume(prog, out, setup.total, done, args.retry_failed)
        trial_store.create()
        trial_store.on_record = report.Progress(columns, setup.total + retried, done_before=len(done))
        if board:  # each training's session as its row is appended; sync() writes those from before
            board.sync(trial_store)
            trial_store.on_record = board.follow(trial_store.on_record)
        evaluator = Evaluator(trial_store, setup.base, Data.make(train, validation, getattr(args, "cv", None), args.seed),
                              TrialOptions(args.seed, threads, args.trial_timeout, score=args.score), execution,
                              retry=args.retry_failed, prog=prog)
        problem = Problem(setup.dims, evaluator, setup.base, args.seed, execution.n_jobs,
                          show=lambda found: report.format_trials(found, names, top=args.top, images=len(validation)))
        output, seconds = search(prog, method, problem, setup, trial_store)
    trials = trial_store.trials()
    fit_total = sum(r["fit_seconds"] for r in trial_store.rows())
    configurations = len({tuple(sorted((k, v) for k, v in t.params.items() if k != setup.rung)) for t in trials})
    print(f"\n{prog}: {configurations} configurations, {len(trial_store.rows())} trainings in "
          f"{report.duration(seconds)} (sum of fit times {report.duration(fit_total)}"
          f"{', this run and before' if done else ''})")
    print(report.format_trials(trials, columns, args.top, rung=setup.rung, images=len(validation)))
    ok = [t for t in store.rank(trials, setup.rung) if t.status == store.OK]
    if not ok:
        raise cli.RunFailed(f"every trial failed; see {out / store.RESULTS} for their messages "
                            "(--retry-failed trains failed and timed-out trials again)")
    try:
        summary = final_model(out, beans, setup.base, ok[0], columns, args.seed, len(trials), seconds, method.script,
                              setup.final, board=board, fit_seconds=fit_total, resumed=bool(done))
    except KeyboardInterrupt:
        print(f"\n{prog}: interrupted while training the final model; the search's trainings are saved in "
              f"{trial_store.path}. Run the same command again to train the final model (the search is not "
              "run again).", flush=True)
        raise
    print()
    print(format_best(summary))
    draw_figures(prog, out, {"val_accuracy.png": lambda: report.plot_scores(trials, setup.dims), **output.figures})
    print(f"\nwrote {out}/")
    return summary


def search(prog, method, problem, setup, trial_store):
    """Runs the method's search; on Ctrl-C, says what is saved and shows it, then re-raises.

    On a cluster, a worker that dies is replaced by its nanny and its training runs again (the
    data are recomputed); a training that kills every worker it runs on is recorded failed
    (tuning.evaluate) and the search goes on without it; a cluster left with no worker for
    --connect-timeout seconds ends the run in one line (what finished is saved)."""
    start = time.perf_counter()
    try:
        found = method.search(problem, setup.args)
        cli.check_interrupted()  # not a final model (nor the test split) after a dropped Ctrl-C
        return found, time.perf_counter() - start
    except ex.ClusterLost as err:
        raise cli.RunFailed(f"the Dask cluster {err}; {len(trial_store.rows())} trainings are saved in "
                            f"{trial_store.path}: run the same command again to resume") from None
    except KeyboardInterrupt:
        rows = trial_store.rows()
        print(f"\n{prog}: interrupted; {len(rows)} of {setup.total} trainings are saved in "
              f"{trial_store.path}. Run the same command again to resume.")
        if rows:
            print(report.format_trials(trial_store.trials(), setup.columns, setup.args.top, rung=setup.rung,
                                       images=len(problem.evaluate.data.validation)))
        raise


@dataclass(frozen=True)
class Board:
    """--tensorboard: the search as an HParams experiment under `folder` (tensorboard_log)."""

    prog: str
    folder: Path
    dims: tuple
    extra: list

    def sync(self, trial_store):
        """Writes the experiment and a session for every stored training that has none yet."""
        tensorboard_log.guarded(self.prog, lambda: tensorboard_log.write_search(
            self.folder, self.dims, self.extra, trial_store.rows(), trial_store.histories()))

    def follow(self, progress):
        """An on_record callback: the progress line, then the new training's session."""
        return lambda number, row, best: (progress(number, row, best), tensorboard_log.guarded(
            self.prog, lambda: tensorboard_log.write_session(self.folder, number, row, row.get("history"))))

    def curves(self, name, history):
        """A run of epoch curves (the final model's)."""
        tensorboard_log.guarded(self.prog, lambda: tensorboard_log.write_curves(self.folder / name, history))


def announce_resume(prog, out, total, done, retry):
    """Says what a resumed search will not train again; returns how many trainings it retries."""
    if not done:
        return 0
    failed = sum(r["status"] in store.RETRYABLE for r in store.latest_by_key(done).values())
    kept = len(done) - (failed if retry else 0)
    print(f"resuming: {len(done)} of {total} trainings are in {out / store.RESULTS}; {kept} will not "
          "be trained again", flush=True)
    if failed:
        print(f"{failed} of them failed or timed out"
              + (": training them again (--retry-failed)" if retry else "; --retry-failed trains them again"),
              flush=True)
    return failed if retry else 0


def show_finished(prog, setup, trial_store, summary):
    """A finished search is not run again: its stored results are shown, the test split is not read."""
    print(f"{prog}: {setup.out} holds this search, finished; its stored results follow. The test "
          "split is not read again (--overwrite starts afresh).")
    on_validation_too = summary.get("final_data") == TRAIN_AND_VALIDATION
    for name in ("epochs", "patience"):
        asked, trained = getattr(setup.args, f"final_{name}"), summary.get("hparams", {}).get(name)
        if name == "patience" and on_validation_too and asked is not None:
            print(f"{prog}: note: --final-patience {asked} not applied: the finished search's model trained on "
                  "train+validation, all its epochs", file=sys.stderr)
        elif asked is not None and asked != trained:
            budget = (f"all {outputs.epoch_count(trained)}" if on_validation_too else
                      f"for up to {outputs.epoch_count(trained)}") if name == "epochs" else f"with patience {trained}"
            print(f"{prog}: note: --final-{name} {asked} not applied: the finished search's model "
                  f"trained {budget}", file=sys.stderr)
    trained_on = summary.get("final_data", "train")  # searches finished before --final-data: train
    if setup.args.final_data not in (AUTO, trained_on):
        print(f"{prog}: note: --final-data {setup.args.final_data} not applied: the finished search's model "
              f"trained on {trained_on}", file=sys.stderr)
    print(report.format_trials(trial_store.trials(), setup.columns, setup.args.top, rung=setup.rung,
                               images=summary.get("validation_images")))  # searches finished before: no count
    print()
    print(format_best(summary))
    return summary


def draw_figures(prog, out, figures):
    """Each figure is optional: one that cannot be drawn is a warning line, not a lost run."""
    for name, draw in figures.items():
        try:
            outputs.save_figure(out / name, draw())
        except Exception as err:  # noqa: BLE001 - a figure never costs the search its results
            reason = (str(err).strip().splitlines() or [""])[0]
            why = f"{err.__class__.__name__}: {reason}" if reason else err.__class__.__name__
            print(f"{prog}: warning: {name} not written ({why})", file=sys.stderr)
