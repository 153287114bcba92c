"""One family of errors, so the CLI catches them in one place and maps each to an exit status.

Library code raises these with a message written for the person at the terminal; the CLI
prints the message and exits with ``exit_code`` (1: the run failed; 2: the command was wrong).
Per-file problems (a corrupt image) are *not* raised out of a scan: they become table rows.
"""

from __future__ import annotations


class MuflowError(Exception):
    """Base class: a problem muflow can explain; ``exit_code`` is the CLI's exit status."""

    exit_code = 1


class UsageError(MuflowError, ValueError):
    """Settings that cannot work together (checked before any work starts)."""

    exit_code = 2


class ConfigError(UsageError):
    """A config's ``check()`` failed: a value out of range or an unknown name."""
