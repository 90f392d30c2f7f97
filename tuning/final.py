"""The end of a search: the best configuration retrained on the train split (early-stopped on
validation), evaluated once on the test split, saved as model.keras with best.json beside it.
best.json is written last: its presence marks a finished search, whose test score is final."""

import dataclasses
from dataclasses import dataclass

import common
import outputs

from .space import fmt, plain
from .store import BEST, MODEL


@dataclass(frozen=True)
class FinalBudget:
    """What the final model trains with beyond the best trial's values: epochs and patience
    where set (None keeps the trial's), and whether a winner on the cosine schedule runs it to
    its end (patience = its epochs), decided once the winner is known."""

    epochs: int = None
    patience: int = None
    cosine_to_end: bool = False

    def apply(self, hp):
        hp = dataclasses.replace(hp, **{name: value for name, value in
                                        (("epochs", self.epochs), ("patience", self.patience)) if value is not None})
        if self.cosine_to_end and hp.schedule == "cosine":
            hp = dataclasses.replace(hp, patience=hp.epochs)
        return hp


def epoch_count(n):
    return f"{n} epoch" + ("" if n == 1 else "s")


def final_model(out, beans, base, best, names, seed, trials, search_seconds, script, final=None, board=None,
                fit_seconds=None, resumed=False):
    """Returns the contents of best.json, after writing it. `final` (a FinalBudget)
    replaces the trials' budget: the search only ranked configurations. `search_seconds` is
    this run's search wall time; `fit_seconds` the sum of every training's fit time in
    results.csv, this run's and those of the runs it resumed (`resumed`). With `board`
    (tuning.run.Board, --tensorboard), the final model's epoch curves go there too, as run
    "final-model", once the model and best.json are written."""
    hp = dataclasses.replace(base, **{k: plain(v) for k, v in best.params.items()})
    trial_budget = f"{epoch_count(hp.epochs)}, patience {hp.patience}"
    hp = (final or FinalBudget()).apply(hp)
    longer = f"{epoch_count(hp.epochs)}, patience {hp.patience}"
    print(f"\nbest: {' '.join(f'{n}={fmt(best.params[n])}' for n in names)}  "
          f"(val_acc {best.val_accuracy:.4f}); retraining on the train split"
          + (f" for up to {longer} (the trial had {trial_budget})" if longer != trial_budget else ""), flush=True)
    final = common.train(hp, beans.train, beans.validation, seed=seed, log=lambda line: print(line, flush=True))
    test_accuracy = common.evaluate(final.model, beans.test)  # the test split's one reading
    outputs.save_model(out / MODEL, final.model)
    summary = {
        "script": script, "params": {k: plain(v) for k, v in best.params.items()},
        "hparams": hp.to_dict(), "val_accuracy": best.val_accuracy,
        "final_val_accuracy": final.val_accuracy, "test_accuracy": test_accuracy,
        "final_epochs": final.epochs, "trials": trials, "search_seconds": round(search_seconds, 1),
        "fit_seconds": None if fit_seconds is None else round(fit_seconds, 1), "resumed": bool(resumed),
        "seed": seed, "image_size": beans.image_size, "data": beans.source, "limit": beans.limit,
    }
    outputs.write_json(out / BEST, summary)
    if board is not None:
        board.curves("final-model", final.history)
    return summary


def format_best(summary):
    return outputs.format_table(
        ["model", "val_accuracy (search)", "val_accuracy (final)", "test_accuracy", "epochs"],
        [["best", f"{summary['val_accuracy']:.4f}", f"{summary['final_val_accuracy']:.4f}",
          f"{summary['test_accuracy']:.4f}", summary["final_epochs"]]])
