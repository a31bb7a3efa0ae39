"""The optimisation step: the LightningModule, the objective, the LR schedule, cross-rank gathering,
GradCache, and the distributed strategies."""
