"""The search core shared by tune_grid.py, tune_random.py and tune_bayes.py.

Data flows one way; each module owns one thing (docs/architecture.md follows one value through them):

    methods     Grid, Random, Bayes: each method's flags and their checks, its trial count, what
      |         identifies its search on resume, and its search (a way of proposing candidates)
      v
    run         the driver: prepare -> open the folder -> search -> table -> final model -> best.json, figures
      |-- flags      the parser; SearchSettings, every search flag's default, range, help and checks
      |-- space      the searched dimensions, parsed from flags, sampled on each field's scale
      |-- searches   grid (ParameterGrid), random (ParameterSampler, coarse to fine), one ask/tell GP-EI loop
      |-- halving    successive halving's rungs
      |-- evaluate   the one path every training takes: candidates -> rows; the driver alone writes
      |     |-- execution  where trainings run: this process, local processes, a Dask cluster
      |     '-- runner     one training -> its row; BeansClassifier, the scikit-learn estimator
      |-- store      results.csv (the one source of every result), search.json, the folder lock
      |-- report     progress lines, the ranked table, the accuracy figure
      '-- final      the best configuration retrained, the test split read once

    python tune_random.py --data-dir ../shared/beans --n-iter 12 --refine 2
"""
