"""The one exception type the CLI turns into a clean one-line error with exit code 2, and the checks that raise it."""
from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Callable, Optional, Union

PARAMETER = re.compile(r"`([a-z][a-z0-9_]*)`")  # a parameter named in a message, in the library's terms


class MecError(Exception):
    """A user-facing error: bad input, a missing file, an impossible request.

    The message speaks the library's terms; ``path`` names the file at fault and ``option`` the parameter (a
    library name such as ``max_iters``), which the CLI shows as its flag (``--max-iters``). Any other parameter
    the message mentions is written in backticks (`data_root`), which the CLI also shows as its flag (see
    :func:`name_options`). The CLI prints one line and exits with code 2; it never shows a traceback for it.
    """

    def __init__(self, message: str, path: Optional[Union[str, Path]] = None, option: Optional[str] = None):
        self.path = None if path is None else str(path)
        self.option = option
        self.message = message
        super().__init__(f"{self.path}: {message}" if self.path else message)


def name_options(text: str, flag: Callable[[str], Optional[str]]) -> str:
    """``text`` with each parameter it names in backticks (`data_root`) written as ``flag(name)``, such as the CLI's
    ``--data-root``; a name ``flag`` does not know (None) stays as it is."""
    return PARAMETER.sub(lambda m: flag(m.group(1)) or m.group(0), text)


def check_number(option: str, value, minimum=None, maximum=None, integer: bool = False, above: bool = False) -> None:
    """Refuse a number outside [minimum, maximum] (or not > minimum with ``above``), NaN and infinity, or a
    non-integer."""
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (integer and not isinstance(value, int)):
        raise MecError(f"must be {'an integer' if integer else 'a number'}, got {value!r}", option=option)
    if not math.isfinite(value):
        raise MecError(f"must be a finite number, got {value}", option=option)
    if minimum is not None and (value <= minimum if above else value < minimum):
        raise MecError(f"must be {'>' if above else '>='} {minimum}, got {value}", option=option)
    if maximum is not None and value > maximum:
        raise MecError(f"must be <= {maximum}, got {value}", option=option)


SEED_MAX = 2**32 - 1  # numpy and torch take seeds in [0, 2**32)
# The most any count option (iterations, images, resamples, array tasks) may ask for: int32's maximum, what torch,
# numpy and Slurm hold without overflow; a value past it (99999999999999999999) is a typo, refused before any work.
COUNT_MAX = 2**31 - 1
