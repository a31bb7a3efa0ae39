"""Tables, figures and sweep specs: plain pandas and matplotlib over the results store, imported by the
notebook, the tests and ``experiments/sweep.py``."""
