"""beans-tune: batch normalization and hyperparameter tuning of a Keras CNN on TFDS beans.

The modules, lowest layer first (each imports only from the ones above it; docs/architecture.md):

    hparams      HParams, the one declaration of every hyperparameter: default, range, scale, help
    images       the beans data or your own folder: checks, carving, decoding (Beans, Split)
    cnn          the CNN with optional BatchNormalization, its optimizer and schedule
    checkpoint   a training's state (public Keras), to continue it; early stopping
    training     train(hp, train, validation) and evaluate(model, split)
    outputs      files written atomically, tables, figures
    cli          flags from HParams, the one-line error contract (exit code 2)
    tensorboard_log  --tensorboard
    tuning/      the searches: space, store, report, runner, execution, evaluate, searches,
                 halving, importance, final, flags, methods, run (the driver)
    scripts      the five commands' entry points (the top-level scripts, the console scripts)
"""
