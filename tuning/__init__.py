"""The search core shared by tune_grid.py, tune_random.py and tune_bayes.py.

Data flows one way; each module owns one thing:

    tune_*.py   a Method: its flags and their checks, its trial count, what identifies its
      |         search on resume, and its search
      v
    run         parse -> prepare -> claim the folder -> search -> report -> final model -> figures
      |-- space      the searched dimensions, parsed from flags, sampled on their natural scale
      |-- store      results.csv (the one source of every result), search.json, the folder lock
      |-- searches   scikit-learn's searches through BeansClassifier; one ask/tell GP-EI loop
      |     |-- runner     one trial: thread limit, time-out, the store; the scikit-learn estimator
      |     '-- execution  where trials run: this process, local processes, a Dask cluster
      |-- report     progress lines, the ranked table, the accuracy figure
      '-- final      the best configuration retrained, the test split read once, best.json

    python tune_random.py --data-dir ../shared/beans --n-iter 12 --refine 2
"""
