"""The one exception type the CLI turns into a clean one-line error with exit code 2."""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Union


class MecError(Exception):
    """A user-facing error: bad input, a missing file, an impossible request.

    The CLI prints ``str(err)`` on one line and exits with code 2; it never shows a traceback for it.
    """

    def __init__(self, message: str, path: Optional[Union[str, Path]] = None):
        self.path = None if path is None else str(path)
        super().__init__(f"{self.path}: {message}" if self.path else message)
