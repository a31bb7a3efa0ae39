"""Tables, figures, sweep specs and sweep plans (training commands and overrides): plain pandas and
matplotlib over the results store, imported by the notebook, the tests and ``experiments/sweep.py``."""
