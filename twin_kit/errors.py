"""Errors that mean "the user's input is bad": the CLI prints them on one line and exits with 2."""


class InputError(ValueError):
    """Bad input: missing or corrupt files, too few images, no overlap, wrong formats, NaNs."""
