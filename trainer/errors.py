"""Errors that mean "the user's input is wrong", as opposed to a bug.

The worker turns these into ``Failed(kind="input")`` and the CLI into exit code 2; their
message always names the file or field, so the user knows what to fix.
"""

from __future__ import annotations

from trainer.config import ConfigError


class InputError(ValueError):
    """A dataset, model file or other input that cannot be used; the message names it."""


BAD_INPUT_ERRORS: tuple[type[Exception], ...] = (ConfigError, InputError)
