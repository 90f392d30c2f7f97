"""The end of a search: the best configuration retrained, on train + validation for all its
epochs (--final-data train+validation; auto, the default, for a cosine schedule run to its end)
or on the train split early-stopped on validation, evaluated once on the test split, and
returned as a `Final`; `summary` makes best.json's contents of it. The driver (tuning.run) writes
model.keras, then best.json last: its presence marks a finished search, whose test score is final."""

import dataclasses
from dataclasses import dataclass

from .. import images, outputs, training
from .space import fmt, plain

AUTO, TRAIN_AND_VALIDATION = "auto", "train+validation"
FINAL_DATA = (AUTO, "train", TRAIN_AND_VALIDATION)  # what --final-data takes


@dataclass(frozen=True)
class FinalBudget:
    """What the final model trains with beyond the best trial's values: epochs and patience
    where set (None keeps the trial's), whether a winner on the cosine schedule runs it to
    its end (patience = its epochs), decided once the winner is known, and the data it trains
    on (FINAL_DATA): the train split, early-stopped on validation with the best epoch kept;
    train + validation, all its epochs with the last one kept (nothing is left to stop on); or
    auto, the one of the two that suits the winner (data_for)."""

    epochs: int = None
    patience: int = None
    cosine_to_end: bool = False
    data: str = "train"

    def data_for(self, hp):
        """What the final model of `hp` trains on. auto: train + validation for a cosine schedule
        run to its end, whose last epoch, at a rate near 0, is the one to keep; otherwise train,
        with the best epoch on validation kept (a constant or slowly decaying rate can end on an
        epoch that validation would have thrown away)."""
        if self.data != AUTO:
            return self.data
        return TRAIN_AND_VALIDATION if self.cosine_to_end and hp.schedule == "cosine" else "train"

    def apply(self, hp):
        hp = dataclasses.replace(hp, **{name: value for name, value in
                                        (("epochs", self.epochs), ("patience", self.patience)) if value is not None})
        if self.data_for(hp) == TRAIN_AND_VALIDATION or (self.cosine_to_end and hp.schedule == "cosine"):
            hp = dataclasses.replace(hp, patience=hp.epochs)  # runs to its end
        return hp


@dataclass(frozen=True)
class Final:
    """The final model: the hyperparameters it trained with, the data it trained on, its
    training (training.TrainResult) and the test split's one reading."""

    hp: object
    data: str
    trained: object
    test_accuracy: float


def train_final(beans, base, best, final, seed, warn=None, names=None):
    """Trains the best trial's configuration on top of `base` with `final` (a FinalBudget: the
    search only ranked configurations) and reads the test split once; returns a Final. Says what
    it trains on (the best values in the order of `names`), and `warn`s (one line) when the
    training did not end well."""
    hp = dataclasses.replace(base, **{k: plain(v) for k, v in best.params.items()})
    trial_budget = f"{outputs.epoch_count(hp.epochs)}, patience {hp.patience}"
    hp = final.apply(hp)
    data = final.data_for(hp)
    shown = " ".join(f"{n}={fmt(best.params[n])}" for n in (names or best.params))
    chosen = f"\nbest: {shown}  (val_acc {best.val_accuracy:.4f}); "
    log = lambda line: print(line, flush=True)  # noqa: E731
    if data == TRAIN_AND_VALIDATION:
        print(chosen + f"retraining on the train and validation splits ({len(beans.train) + len(beans.validation)} "
              f"images) for all {outputs.epoch_count(hp.epochs)}, the last one's weights kept: no split is left to stop "
              f"on or pick an epoch by (the trial had {trial_budget})", flush=True)
        trained = training.train(hp, images.join_splits(beans.train, beans.validation), None, seed=seed, log=log,
                               keep_best=False)
    else:
        longer = f"{outputs.epoch_count(hp.epochs)}, patience {hp.patience}"
        print(chosen + "retraining on the train split"
              + (f" for up to {longer} (the trial had {trial_budget})" if longer != trial_budget else ""), flush=True)
        trained = training.train(hp, beans.train, beans.validation, seed=seed, log=log)
    if trained.status != "ok" and warn is not None:
        warn(f"the final model's training ended as {trained.status!r} after {outputs.epoch_count(trained.epochs)} "
             "(see final_status in best.json)")
    return Final(hp, data, trained, training.evaluate(trained.model, beans.test))  # the test split's one reading


def summary(final, best, search, beans):
    """best.json's contents: the final model (a Final), the best trial, and `search`, what the
    search reports of itself (script, trials, trainings, search_seconds, fit_seconds, resumed,
    seed)."""
    on_validation_too, trained = final.data == TRAIN_AND_VALIDATION, final.trained
    return {
        "script": search["script"], "params": {k: plain(v) for k, v in best.params.items()},
        "hparams": final.hp.to_dict(), "val_accuracy": best.val_accuracy,
        "final_data": final.data,
        # None when the final model trained on the validation split (its score there means nothing)
        # or did not end well (NaN, which strict JSON has no word for; final_status says why)
        "final_val_accuracy": None if on_validation_too or trained.status != "ok" else trained.val_accuracy,
        "final_status": trained.status, "final_seconds": round(trained.seconds, 1),
        "test_accuracy": final.test_accuracy,
        "final_epochs": trained.epochs, "trials": search["trials"], "trainings": search["trainings"],
        "search_seconds": round(search["search_seconds"], 1),
        "fit_seconds": None if search.get("fit_seconds") is None else round(search["fit_seconds"], 1),
        "resumed": bool(search.get("resumed")), "seed": search["seed"], "image_size": beans.image_size,
        "data": beans.source, "limit": beans.limit, "classes": list(beans.classes),
        "validation_images": len(beans.validation), "test_images": len(beans.test),
    }


def format_best(summary):
    status = summary["final_status"]
    final_val = (status if status != "ok" else "trained on it" if summary["final_val_accuracy"] is None
                 else f"{summary['final_val_accuracy']:.4f}")
    test = outputs.accuracy_with_se(summary["test_accuracy"], summary["test_images"])
    return outputs.format_table(
        ["model", "val_accuracy (search)", "val_accuracy (final)", "test_accuracy ± se", "epochs"],
        [["best", f"{summary['val_accuracy']:.4f}", final_val, test, summary["final_epochs"]]])
