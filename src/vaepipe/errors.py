"""Errors the user can fix: each carries the one line that says what and how."""


class UserError(Exception):
    """An expected failure: printed as one line, no traceback, exit code `exit_code`."""

    exit_code = 1


class ParamsError(UserError):
    """A bad value in params.yaml."""

    exit_code = 2


class DataError(UserError):
    """A data set that cannot be used as it is (an empty folder, a class with no image)."""

    exit_code = 2


class Interrupted(UserError):
    """Ctrl-C or SIGTERM: the stage stops and writes nothing."""

    exit_code = 130
