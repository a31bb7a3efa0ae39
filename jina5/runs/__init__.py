"""One run's directory and launch: lifecycle, config identity, the student from ``init_from``,
checkpoints, the run lock, checkpoint averaging, curves, loggers, multirun launchers, tab completion."""
