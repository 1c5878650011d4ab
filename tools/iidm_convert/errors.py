"""The one exception type of the converter."""


class ConvertError(Exception):
    """A problem with the user's input or options, reported without traceback."""
