"""The one exception type the commands raise for bad input; the CLI prints it without a traceback."""


class UsageError(ValueError):
    """Bad input (dataset, class, data dir, checkpoint, hyper-parameter), found before training starts."""
