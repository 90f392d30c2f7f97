"""Every score with its uncertainty: the standard error column of the ranked table, the line on
whether the best stands apart from the runner-up, and ± beside the test accuracy."""

import math

import pytest

from beans_tune import outputs
from beans_tune.tuning import report
from beans_tune.tuning.final import format_best
from beans_tune.tuning.store import Trial


def trial(score, folds=1, std=math.nan, kind="validation", **params):
    return Trial(params or {"layers": 3}, score, std, 1.0, folds=folds, kind=kind)


def test_a_score_on_one_split_has_the_binomial_error_of_its_images():
    # 0.9 of 100 images: p = 91/102 with one success and one failure added
    p = 91 / 102
    assert report.standard_error(trial(0.9), 100) == pytest.approx(math.sqrt(p * (1 - p) / 100))
    assert report.standard_error(trial(1.0), 133) > 0, "a perfect score is not certain"
    assert math.isnan(report.standard_error(trial(0.9), None)), "no count, no error"
    assert math.isnan(report.standard_error(trial(math.nan), 100))


def test_folds_give_their_own_error_and_seeds_add_theirs_to_the_images():
    # std over 3 folds is np.std (ddof 0): the sample std / sqrt(3) is std / sqrt(2)
    assert report.standard_error(trial(0.9, 3, 0.02, "cv"), 100) == pytest.approx(0.02 / math.sqrt(2))
    seeds = report.standard_error(trial(0.9, 3, 0.02, "seeds"), 100)
    assert seeds == pytest.approx(math.hypot(0.02 / math.sqrt(2), report.standard_error(trial(0.9), 100)))


def test_the_best_one_image_ahead_is_within_noise_and_the_line_says_what_would_separate_it():
    trials = [trial(0.9474, layers=3), trial(0.9549, layers=4), trial(0.80, layers=2)]
    line = report.separation(trials, 133)
    assert line.startswith("best vs runner-up: 0.9549 vs 0.9474, 0.0075 apart (1 of 133 validation images)")
    assert "within noise: 1 of the other 2 configurations lies within 2 standard errors of the best" in line
    noise = math.hypot(report.standard_error(trials[1], 133), report.standard_error(trials[0], 133))
    needed = 133 * (2 * noise / 0.0075) ** 2
    assert f"about {needed:,.0f} validation images" in line and "--cv K" in line and "--repeats R" in line


def test_a_clear_gap_is_called_separated():
    line = report.separation([trial(0.95, layers=4), trial(0.70, layers=2)], 133)
    assert line.endswith("; separated.") and "33 of 133 validation images" in line


def test_ties_and_lone_configurations():
    assert "a tie (the first trained is kept); 1 of the other 1 configurations lies" in report.separation(
        [trial(0.9, layers=1), trial(0.9, layers=2)], 50)
    assert report.separation([trial(0.9)], 50) == ""
    assert report.separation([trial(0.9, layers=1), trial(math.nan, layers=2)], 50) == ""


def test_with_halving_only_the_top_rung_competes():
    trials = [Trial({"layers": 2, "epochs": 9}, 0.80, math.nan, 1.0), Trial({"layers": 3, "epochs": 9}, 0.78, math.nan, 1.0),
              Trial({"layers": 4, "epochs": 3}, 0.99, math.nan, 1.0)]
    line = report.separation(trials, 100, rung="epochs")
    assert line.startswith("best vs runner-up: 0.8000 vs 0.7800")


def test_the_ranked_table_has_the_error_beside_each_score_then_the_line():
    text = report.format_trials([trial(0.9474, layers=3), trial(0.9549, layers=4)], ["layers"], images=133)
    header, _, first, second, line = text.splitlines()[:5]
    assert header.split()[:5] == ["rank", "layers", "val_acc", "±", "se"]
    assert first.split()[1:4] == ["4", "0.9549", f"{report.standard_error(trial(0.9549), 133):.4f}"]
    assert line.startswith("best vs runner-up")


def test_the_final_table_gives_the_test_accuracy_with_its_error():
    summary = {"val_accuracy": 0.95, "final_val_accuracy": None, "test_accuracy": 0.9609, "final_epochs": 150,
               "test_images": 128}
    assert f"0.9609 ± {outputs.binomial_se(0.9609, 128):.4f}" in format_best({**summary, "final_status": "ok"})


def test_repeats_without_an_image_count_still_say_what_their_error_is_over():
    trials = [trial(0.9, 3, 0.01, "seeds", layers=1), trial(0.85, 3, 0.01, "seeds", layers=2)]
    line = report.separation(trials, None)
    assert "over its 3 seeds)" in line and "None" not in line
