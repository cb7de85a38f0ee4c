"""The exceptions the commands end with on purpose; the CLI prints them without a traceback."""


class UsageError(ValueError):
    """Bad input (dataset, class, data dir, checkpoint, hyper-parameter), found before training starts."""


class Interrupted(KeyboardInterrupt):
    """Ctrl-C stopped a training run; `run_dir` holds the checkpoints to resume from (if it wrote one yet)."""

    def __init__(self, run_dir):
        super().__init__(str(run_dir))
        self.run_dir = run_dir
