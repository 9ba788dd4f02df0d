"""The training loop's parts: builders, runners, callbacks, loggers, result files."""
