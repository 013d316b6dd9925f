"""The one exception type for bad input: the CLI prints it as a one-line error."""


class SaltsegError(ValueError):
    """Bad input or configuration: missing or mismatched files, malformed CSV or RLE, bad config."""
