"""The errors the CLI turns into a single line: one base class, a few kinds callers can tell apart."""

from __future__ import annotations


class SharewheelError(Exception):
    """A problem with the user's input or environment, reported as one line without a traceback.

    The message names the file or option at fault; the CLI prints it and exits non-zero.
    """


class InputWheelError(SharewheelError):
    """The wheel given to repair or show is damaged or is no wheel: its zip, names, RECORD, metadata."""


class BinaryError(InputWheelError):
    """A binary in the wheel (or a prefix) that its format's reader cannot read."""


class ProviderError(SharewheelError):
    """A provider wheel, installed provider or plugin that cannot be used as one."""


class ProofError(SharewheelError):
    """A provider cannot stand in for the library a binary was linked against (the stand-in proof)."""

    def __init__(self, message: str, provider: str = "") -> None:
        super().__init__(message)
        self.provider = provider  # the distribution refused, for callers that try without it (dedupe)


class ConfigError(SharewheelError):
    """A flag, environment variable or [tool.sharewheel] setting that is wrong."""


class ToolError(SharewheelError):
    """auditwheel, delocate or delvewheel refused the wheel (what it needs cannot be vendored)."""
