"""Exception type for bad user input, so callers can tell it apart from bugs."""


class DadaInputError(ValueError):
    """Raised when an input (image, depth, parameter, file) is malformed or out of range.

    The message is meant to be shown to a user as is: it says what was wrong and what was expected.
    """
