"""The one exception type the CLI turns into a single error line."""

from __future__ import annotations


class SharewheelError(Exception):
    """A problem with the user's input or environment, reported as one line without a traceback.

    The message names the file or option at fault; the CLI prints it and exits non-zero.
    """
