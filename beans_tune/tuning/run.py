"""A tuning script's whole run, in steps that return what the next one needs:

    parse -> prepare -> (claim the folder, resume?) -> search -> report -> final model -> figures

The method (tuning.methods: Grid, Random, Bayes) brings its own flags, their checks, its trial
count, the settings that identify its search, and the search itself.
"""

import contextlib
import sys
import time
from argparse import Namespace
from dataclasses import dataclass
from pathlib import Path

from .. import cli, cnn, images, outputs, tensorboard_log
from ..hparams import HPARAM_NAMES, HParams, UsageError
from . import execution as ex
from . import importance, outfolder, pruning, report, store
from .estimate import estimate
from .evaluate import Evaluator
from .final import AUTO, TRAIN_AND_VALIDATION, FinalBudget, format_best, summary, train_final
from .flags import SearchSettings, parser_for
from .runner import Data, TrialOptions, limit_threads
from .searches import Problem
from .space import FINAL_EPOCHS, TRIAL_DEFAULTS, build_space, spec_text


@dataclass(frozen=True)
class Setup:
    """Everything decided from the flags alone, before any data is read."""

    args: Namespace
    settings: SearchSettings
    dims: tuple
    base: HParams
    total: int                 # trainings the search will run
    out: Path
    rung: str = None           # successive halving: the hyperparameter each rung sets ("epochs")
    final: FinalBudget = FinalBudget()  # what the final model trains with beyond the best trial's values
    asked: int = None          # trainings asked for, where the space holds fewer
    epochs: int = 0            # epochs the trainings run at most

    @property
    def names(self):
        return [d.name for d in self.dims]

    @property
    def columns(self):
        """The hyperparameters each training is stored and shown with: the searched ones, and a
        halving rung's epochs."""
        return [*self.names, *([self.rung] if self.rung else [])]


def prepare(argv, method):
    """Parses and checks every flag; returns the Setup. Reads nothing but a --grid file."""
    args = parser_for(method).parse_args(argv)
    cli.check_run_args(args)
    settings = SearchSettings.from_args(args)
    overrides = {n: getattr(args, n) for n in HPARAM_NAMES if getattr(args, n) is not None}
    space = method.space(args)  # reads a --grid file: once
    dims, fixed = build_space(trials_run_to_the_end(space.values, overrides), overrides, method.allow_range,
                              space.given)
    base = HParams(**fixed)
    method.check(args, space, dims, base)
    several = "--cv" if getattr(args, "cv", None) else "--repeats" if getattr(args, "repeats", 1) > 1 else None
    if settings.prune and several:
        raise UsageError(f"--prune goes with a search scored on the validation split, not with {several}: a "
                         "candidate's score is over all its trainings, and one stopped early leaves it none")
    if not dims:
        raise UsageError("nothing to search: every hyperparameter has a single value")
    out = Path(args.out) if args.out else cli.default_out(method.script)
    count = method.count(args, dims, base)
    return Setup(args, settings, tuple(dims), base, count.trainings, out, method.rung(args),
                 final_budget(settings, space, overrides, dims), count.asked, count.epochs)


def trials_run_to_the_end(space, overrides):
    """The default trial patience is the default trial epochs (a cosine schedule run to its end);
    with the cosine schedule, one --epochs value the user gives becomes the trials' patience too,
    unless a flag or a grid file sets the patience (another schedule keeps early stopping)."""
    epochs = str(overrides.get("epochs", "")).strip()
    schedule = str(overrides.get("schedule", spec_text(space.get("schedule", "")))).strip().lower()
    if (epochs and "," not in epochs and ":" not in epochs and "patience" not in overrides and schedule == "cosine"
            and space.get("patience") == TRIAL_DEFAULTS["patience"] == TRIAL_DEFAULTS["epochs"]):
        return {**space, "patience": epochs}
    return space


def final_budget(settings, space, overrides, dims):
    """The final model's epochs and patience. Trials train on the searches' shorter budget
    (TRIAL_DEFAULTS) to rank configurations; unless the user set the trials' epochs (a flag, or
    a file they gave), the model you keep trains for FINAL_EPOCHS, and never with less patience
    than its trial had nor than the training scripts'. --final-epochs and --final-patience set
    them whatever the trials had. Unless the user set the patience, a best configuration with the
    cosine schedule trains with patience = its epochs (FinalBudget.apply, once the winner is
    known): early stopping would cut the schedule short of its low rates."""
    searched = {d.name for d in dims}
    longest = {"epochs": FINAL_EPOCHS, "patience": max(HParams().patience, TRIAL_DEFAULTS["patience"])}
    final = {name: longest[name] for name in ("epochs", "patience")
             if name not in overrides and name not in space.given and name not in searched}
    if settings.final_epochs:
        final["epochs"] = settings.final_epochs
    if settings.final_patience is not None:
        final["patience"] = settings.final_patience
    # the user set no patience: a cosine winner runs to the end
    return FinalBudget(**final, cosine_to_end=settings.final_patience is None and "patience" in final,
                       data=settings.final_data)


FINAL_DATA_SHOWN = {
    "train": "train, the best epoch on validation kept",
    TRAIN_AND_VALIDATION: "train + validation, all its epochs, the last kept",
    AUTO: "train + validation for a cosine schedule run to its end (all its epochs, the last kept), else train "
          "(the best epoch on validation kept)",
}


def manifest(setup, method, beans):
    """What makes two runs the same search: resuming is allowed only when this matches exactly.
    Settings that change how, not what, trials train (--n-jobs, --trial-timeout, --scheduler)
    are not part of it; nor are the fixed hyperparameters at HParams' defaults, so that a field
    added with a default that keeps today's results leaves every folder resumable."""
    data = str(beans.data_dir.resolve()) if beans.data_dir else beans.source
    return {"format": outfolder.FORMAT, "script": method.script, "space": {d.name: d.spec() for d in setup.dims},
            "fixed": {k: v for k, v in setup.base.to_dict().items() if v != getattr(HParams(), k)}, "data": data, "image_size": beans.image_size,
            "limit": beans.limit, "seed": setup.args.seed, "method": method.identity(setup.args),
            # only when on: a folder of a search without it stays resumable
            **({"prune": [pruning.STARTUP_TRIALS, pruning.WARMUP_EPOCHS]} if setup.settings.prune else {}),
            # a folder's classes and file names: its images changed, the search is another one
            **({"images": images} if (images := beans.fingerprint()) else {})}


def open_execution(settings, stack):
    """Execution (where trials run) and TensorFlow threads per trial."""
    if settings.scheduler:
        timeout = settings.connect_timeout or ex.CONNECT_TIMEOUT
        client = stack.enter_context(ex.connect(settings.scheduler, timeout))
        n_jobs = settings.n_jobs if settings.n_jobs > 1 else max(sum(client.nthreads().values()), 1)
        return (ex.Execution(n_jobs, client, patience=timeout, follow_cluster=settings.n_jobs == 1),
                settings.threads_per_trial)
    threads = settings.threads_per_trial
    if settings.n_jobs > 1 and threads is None:
        threads = ex.default_threads(settings.n_jobs)
    return ex.Execution(settings.n_jobs), threads


@dataclass
class State:
    """What the --out folder holds for this search: its store, the rows already in it, a finished
    search's best.json, and the TensorBoard experiment (--tensorboard)."""

    store: store.TrialStore
    done: list
    finished: dict = None
    board: object = None


def open_state(prog, setup, method, beans):
    """Checks the folder against this search (outfolder.open_search) and reads what it holds."""
    settings, out = setup.settings, setup.out
    resumed = outfolder.open_search(out, manifest(setup, method, beans), settings.overwrite,
                                ("val_accuracy.png", *method.figures))
    trial_store = store.TrialStore(out / store.RESULTS, setup.columns)
    board = (tensorboard_log.Board(prog, out / store.BOARD, setup.dims, [setup.rung] if setup.rung else [])
             if setup.args.tensorboard else None)
    state = State(trial_store, trial_store.rows() if resumed else [], board=board)
    state.finished = outfolder.read_best(out, trial_store) if resumed else None
    if state.finished is not None and settings.retry_failed:
        raise UsageError(f"{out} holds a finished search, whose test score is final: --retry-failed "
                         "applies to an unfinished one (--overwrite starts afresh)")
    return state


def run(argv, method):
    """The whole run of a tuning script: flags, search, table, final model, files."""
    prog = f"{method.script}.py"
    setup = prepare(argv, method)
    args, settings = setup.args, setup.settings
    beans = images.Beans(args.data_dir, image_size=args.image_size, limit=args.limit, seed=args.seed)
    with contextlib.ExitStack() as stack:
        execution, threads = open_execution(settings, stack)
        stack.enter_context(outfolder.claim(setup.out))  # held until best.json is written
        state = open_state(prog, setup, method, beans)
        if state.finished is not None:
            if state.board:  # a search finished without --tensorboard gets its experiment now
                state.board.sync(state.store)
            return show_finished(prog, setup, state.store, state.finished)
        if threads and execution.in_this_process and not limit_threads(threads):
            print(f"{prog}: note: --threads-per-trial {threads} not applied: TensorFlow already runs in "
                  "this process", file=sys.stderr)
        train, validation = beans.train, beans.validation  # decoded here, after every check
        method.check_data(args, train, validation)
        start_search(prog, setup, method, beans, execution, threads)
        show_estimate(setup, state, execution, train, validation)
        if state.board:  # the sessions of trainings stored by a run without --tensorboard
            state.board.sync(state.store)
        problem = make_problem(prog, setup, state, Data.make(train, validation, method.cv(args), args.seed),
                               execution, threads)
        output, seconds = search(prog, method, problem, setup, state.store)
        return finish(prog, setup, method, beans, state, output, seconds)


def start_search(prog, setup, method, beans, execution, threads):
    """Writes the manifest and says what the search will do, and on what data."""
    args, settings = setup.args, setup.settings
    if setup.asked is not None and setup.total < setup.asked:
        print(f"{prog}: note: the space holds fewer configurations than asked for; running "
              f"{setup.total} trainings, not {setup.asked}", file=sys.stderr)
    outfolder.write_manifest(setup.out, manifest(setup, method, beans))
    cli.print_config(f"{prog}: resolved configuration", {
        "data": beans.source, "image size": args.image_size, "seed": args.seed, "out": setup.out,
        **method.describe(args),
        "trainings": setup.total, "trials run in": execution.describe(),
        "parallel trials": execution.n_jobs if not threads else f"{execution.n_jobs} ({threads} threads each)",
        **({"trial timeout": f"{settings.trial_timeout:g}s"} if settings.trial_timeout else {}),
        **({"pruning": pruning.describe()} if settings.prune else {}),
        "final model trains on": FINAL_DATA_SHOWN[setup.final.data],
        **{f"search {d.name}": d.describe(method.scale_words) for d in setup.dims},
        **{k: v for k, v in setup.base.to_dict().items() if k not in setup.names}})
    print("\n".join(beans.describe()), flush=True)


def show_estimate(setup, state, execution, train, validation):
    """The trainings and epochs left and their time, from an epoch timed here (trials in this
    process only: parallel ones share the cores in ways one timing does not tell)."""
    if not execution.in_this_process:
        print(f"estimate: not made for parallel trials; {setup.total} trainings, "
              f"{outputs.epoch_count(setup.epochs)} in all", flush=True)
        return
    done = store.latest_by_key(state.done).values()
    left = max(0, setup.total - len(done))
    if not left:
        return  # only the final model is left to train
    epochs_left = max(0, setup.epochs - sum(row["epochs"] for row in done))  # halving: the later rungs, longer
    timed = estimate(setup.dims, setup.base, train, validation, left, epochs_left,
                     setup.final.epochs or setup.base.epochs, setup.args.seed)
    print(f"estimate: {timed.describe() if timed else 'not made: the timed training ended in its first epoch'}",
          flush=True)


def make_problem(prog, setup, state, data, execution, threads):
    """The store made ready to take this run's rows (progress lines, TensorBoard sessions), and
    the Problem the method searches: its evaluate path over `data`."""
    settings, done = setup.settings, state.done
    last = announce_resume(prog, setup.out, setup.total, done, settings.retry_failed)
    state.store.create()
    state.store.on_record = report.Progress(setup.columns, last, done_before=len(done))
    if state.board:  # each training's session as its row is appended
        state.store.on_record = state.board.follow(state.store.on_record)
    evaluator = Evaluator(state.store, setup.base, data,
                          TrialOptions(setup.args.seed, threads, settings.trial_timeout),
                          execution, retry=settings.retry_failed, prog=prog,
                          pruner=pruning.Pruner(done, state.store.histories()) if settings.prune else None)
    return Problem(setup.dims, evaluator, setup.base, setup.args.seed, execution.n_jobs,
                   show=lambda found: report.format_trials(found, setup.names, top=settings.top,
                                                           images=len(data.validation)))


def finish(prog, setup, method, beans, state, output, seconds):
    """The ranked table, the final model, best.json (written last), the figures."""
    trial_store, out, rung = state.store, setup.out, setup.rung
    rows = trial_store.rows()
    trials = store.trials_of(rows)
    fit_total = sum(r["fit_seconds"] for r in rows)
    configurations = len({tuple(sorted((k, v) for k, v in t.params.items() if k != rung)) for t in trials})
    print(f"\n{prog}: {configurations} configurations, {len(rows)} trainings in "
          f"{report.duration(seconds)} (sum of fit times {report.duration(fit_total)}"
          f"{', this run and before' if state.done else ''})")
    print(report.format_trials(trials, setup.columns, setup.settings.top, rung=rung, images=len(beans.validation)))
    show_importance(trials, setup.dims, len(beans.validation), rung)
    ok = [t for t in store.rank(trials, rung) if t.status == store.OK]
    if not ok:
        raise cli.RunFailed(f"every trial failed; see {out / store.RESULTS} for their messages "
                            "(--retry-failed trains failed and timed-out trials again)")
    warn = lambda line: print(f"{prog}: warning: {line}", file=sys.stderr, flush=True)  # noqa: E731
    try:
        final = train_final(beans, setup.base, ok[0], setup.final, setup.args.seed, warn, setup.columns)
        outputs.save_model(out / store.MODEL, cnn.for_raw_images(final.trained.model, beans.image_size))
    except KeyboardInterrupt:
        print(f"\n{prog}: interrupted while training the final model; the search's trainings are saved in "
              f"{trial_store.path}. Run the same command again to train the final model (the search is not "
              "run again).", flush=True)
        raise
    best = summary(final, ok[0], {"script": method.script, "trials": len(trials),
                                  "trainings": len(store.latest_by_key(rows)), "search_seconds": seconds,
                                  "fit_seconds": fit_total, "resumed": bool(state.done), "seed": setup.args.seed},
                   beans)
    outputs.write_json(out / store.BEST, best)  # last: a finished search
    if state.board:
        state.board.curves("final-model", final.trained.history)
    print()
    print(format_best(best))
    draw_figures(prog, out, {"val_accuracy.png": lambda: report.plot_scores(trials, setup.dims), **output.figures})
    print(f"\nwrote {out}/")
    return best


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
    except ex.ExecutionLost as err:
        raise cli.RunFailed(f"{err}; {len(trial_store.rows())} trainings are saved in "
                            f"{trial_store.path}: run the same command again to resume") from None
    except KeyboardInterrupt:
        rows = trial_store.rows()
        print(f"\n{prog}: interrupted; {len(rows)} of {setup.total} trainings are saved in "
              f"{trial_store.path}. Run the same command again to resume.")
        if rows:
            print(report.format_trials(trial_store.trials(), setup.columns, setup.settings.top, rung=setup.rung,
                                       images=len(problem.evaluate.data.validation)))
        raise


def announce_resume(prog, out, total, done, retry):
    """Says what a resumed search will not train again; returns the trial number its last
    training will get (the store numbers rows, and a retried training adds a row)."""
    if not done:
        return total
    latest = store.latest_by_key(done).values()
    failed = sum(r["status"] in store.RETRYABLE for r in latest)
    kept = len(latest) - (failed if retry else 0)
    print(f"resuming: {len(latest)} of {total} trainings are in {out / store.RESULTS}; {kept} will not "
          "be trained again", flush=True)
    if failed:
        print(f"{failed} of them failed or timed out"
              + (": training them again (--retry-failed)" if retry else "; --retry-failed trains them again"),
              flush=True)
    return len(done) + total - kept


def show_finished(prog, setup, trial_store, best):
    """A finished search is not run again: its stored results are shown, the test split is not read."""
    print(f"{prog}: {setup.out} holds this search, finished; its stored results follow. The test "
          "split is not read again (--overwrite starts afresh).")
    on_validation_too = best.get("final_data") == TRAIN_AND_VALIDATION
    for name in ("epochs", "patience"):
        asked, trained = getattr(setup.settings, f"final_{name}"), best.get("hparams", {}).get(name)
        if name == "patience" and on_validation_too and asked is not None:
            print(f"{prog}: note: --final-patience {asked} not applied: the finished search's model trained on "
                  "train+validation, all its epochs", file=sys.stderr)
        elif asked is not None and asked != trained:
            budget = (f"all {outputs.epoch_count(trained)}" if on_validation_too else
                      f"for up to {outputs.epoch_count(trained)}") if name == "epochs" else f"with patience {trained}"
            print(f"{prog}: note: --final-{name} {asked} not applied: the finished search's model "
                  f"trained {budget}", file=sys.stderr)
    trained_on = best["final_data"]
    if setup.settings.final_data not in (AUTO, trained_on):
        print(f"{prog}: note: --final-data {setup.settings.final_data} not applied: the finished search's model "
              f"trained on {trained_on}", file=sys.stderr)
    trials = trial_store.trials()
    print(report.format_trials(trials, setup.columns, setup.settings.top, rung=setup.rung,
                               images=best["validation_images"]))
    show_importance(trials, setup.dims, best["validation_images"], setup.rung)
    print()
    print(format_best(best))
    return best


def show_importance(trials, dims, images, rung):
    """Which hyperparameters matter, after the ranked table (tuning.importance); nothing when
    too few trials are scored to say."""
    table = importance.report(trials, dims, images, rung)
    if table:
        print(f"\n{table}")


def draw_figures(prog, out, figures):
    """Each figure is optional: one that cannot be drawn is a warning line, not a lost run."""
    for name, draw in figures.items():
        try:
            outputs.save_figure(out / name, draw())
        except Exception as err:  # noqa: BLE001 - a figure never costs the search its results
            reason = (str(err).strip().splitlines() or [""])[0]
            why = f"{err.__class__.__name__}: {reason}" if reason else err.__class__.__name__
            print(f"{prog}: warning: {name} not written ({why})", file=sys.stderr)
