"""Errors a user can act on.

Every error raised for bad input names the culprit (the file, clip, parameter or value) in
its message, so a failed sweep or notebook says what to fix without a traceback dive.
"""
from __future__ import annotations


class CsuError(Exception):
    """Base class for all csu-lab errors caused by user input or on-disk state."""


class ConfigError(CsuError, ValueError):
    """A configuration value or a parameter is invalid (the message names it)."""


class AudioError(CsuError):
    """An audio file cannot be used (missing, unreadable, empty, ...; the message names it)."""


class ManifestError(CsuError):
    """A dataset manifest is inconsistent (duplicated clip ids, unknown labels, ...)."""


class RunRecordError(CsuError):
    """A run directory is missing, incomplete or belongs to another configuration."""


def unknown_name(kind: str, name: str, choices) -> ConfigError:
    """The error for a name that is not in a registry, listing what exists."""
    return ConfigError(f"unknown {kind} {name!r}; choose one of: {', '.join(sorted(choices))}")
