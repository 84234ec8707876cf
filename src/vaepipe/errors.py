"""Errors the user can fix: each carries the one line that says what and how."""

import unicodedata


def printable(text: str) -> str:
    """Text as a terminal may show it: control and format characters (an escape sequence,
    a line break, a right-to-left override) as \\x, \\u escapes, so a file name can neither
    clear the screen nor break a one-line message."""
    return "".join(char if unicodedata.category(char)[0] != "C" and unicodedata.category(char) not in ("Zl", "Zp") else
                   f"\\x{ord(char):02x}" if ord(char) < 0x100 else f"\\u{ord(char):04x}" for char in text)


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


def unreadable(path, error: Exception, stage: str) -> UserError:
    """A checkpoint that torch.load(weights_only=True) refuses, or that builds no model."""
    reason = str(error).splitlines()[0] if str(error) else type(error).__name__
    return UserError(f"{path} is not a model this project wrote ({reason[:120]}); "
                     f"run `dvc repro {stage} --force` to rebuild it")
