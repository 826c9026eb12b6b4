"""Errors that the CLI turns into one clear line and an exit code.

`BadInput` covers everything a user can fix (a wrong path, option, file or version): exit 2.
Anything else that escapes a command is an internal error: exit 1.
"""

from __future__ import annotations


class BadInput(Exception):
    """A problem with the user's input: a file, folder, option or config value (exit code 2)."""


class MissingBackend(BadInput):
    """A detector/aligner backend or its weights are not available on this machine."""
