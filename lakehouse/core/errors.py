"""The project's exception hierarchy.

Every error a user can cause is a :class:`LakehouseError` whose message is one sentence saying
what went wrong and what to do; the CLI prints it without a traceback. Each class also subclasses
the closest built-in, so callers can catch ``ValueError`` or ``FileNotFoundError`` as usual.
"""

from __future__ import annotations


class LakehouseError(Exception):
    """Base class for errors a user can cause and fix."""

    exit_code = 2


class ConfigError(LakehouseError, ValueError):
    """The configuration (file, environment or flags) is invalid."""


class InputError(LakehouseError, ValueError):
    """An argument or input file is invalid."""


class InputNotFoundError(LakehouseError, FileNotFoundError):
    """A path the user named does not exist."""


class SourceNotFoundError(LakehouseError, LookupError):
    """A source name is not registered in the lakehouse."""


class TableNotFoundError(LakehouseError, LookupError):
    """A table does not exist (yet) in the lakehouse."""


class QueryError(LakehouseError, ValueError):
    """User SQL failed to parse, bind or run."""


class QueryRefusedError(LakehouseError, PermissionError):
    """User SQL tried to do something the locked-down connection does not allow."""


class QueryTimeoutError(LakehouseError, TimeoutError):
    """User SQL ran past its time limit."""


class ModelUnavailableError(LakehouseError, RuntimeError):
    """A model's weights could not be found or loaded."""


class PipelineError(LakehouseError, RuntimeError):
    """A Dagster run of the asset graph failed."""


class WriteConflictError(LakehouseError, RuntimeError):
    """A commit met a concurrent change it must not be applied over (the table was overwritten or
    restored), or kept conflicting after every retry; the step fails instead of guessing."""


class PublicationError(LakehouseError, RuntimeError):
    """A blocking check failed on the versions about to be published: readers keep the last good
    ones."""
