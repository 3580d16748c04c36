"""The project's exceptions.

Every error that crosses a module boundary is an :class:`MLOpsError`. Each one
carries the exit code that entrypoints map it to:

* ``EXIT_RETRY`` (1): a failure that a retry may fix (network, unavailable bucket).
* ``EXIT_BAD_INPUT`` (2): bad input or configuration; a retry will not help.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_RETRY = 1
EXIT_BAD_INPUT = 2


class MLOpsError(Exception):
    """Base class of all project errors.

    Attributes:
        exit_code: The process exit code an entrypoint should use for it.
    """

    exit_code: int = EXIT_RETRY


class BadInputError(MLOpsError):
    """Bad input or configuration: retrying will not help (exit code 2)."""

    exit_code = EXIT_BAD_INPUT


class ConfigError(BadInputError):
    """A configuration file or value is invalid; the message names the key or file."""


class TrainingTimeoutError(BadInputError):
    """Training ran past ``training.max_seconds``: the same config would again (exit code 2)."""


class DataValidationError(BadInputError):
    """Input data failed validation; the message names the column or file."""


class SchemaChangeError(DataValidationError):
    """A batch's columns differ from the serving model's input schema (exit code 2)."""


class ValidationFailedError(DataValidationError):
    """A batch breaks a rule of the ``validation:`` config section (exit code 2); the
    message starts with ``validation failed:`` (see :mod:`mlops.validation`)."""


class InvalidVersionIdError(BadInputError):
    """A caller-given version id is not a safe name."""


class VersionNotFoundError(BadInputError):
    """A data or model version id does not exist in the store."""


class VersionExistsError(BadInputError):
    """A version id is already taken and versions are never overwritten."""


class IntegrityError(BadInputError):
    """A stored artifact does not match the checksum recorded for it."""


class StorageError(MLOpsError):
    """A storage operation failed in a way a retry may fix (exit code 1)."""


class StorageConfigError(BadInputError):
    """The store cannot be used as configured: missing bucket, no permission, bad URI."""


class KubernetesError(MLOpsError):
    """A Kubernetes API call or a step Job failed."""


class StepFailedError(MLOpsError):
    """A pipeline step failed; ``exit_code`` follows the step's own exit code."""

    def __init__(self, message: str, exit_code: int = EXIT_RETRY) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class KubernetesBadRequestError(KubernetesError, BadInputError):
    """The Kubernetes API refused a request that a retry will not fix (exit code 2).

    Missing or unreadable kubeconfig, a namespace that does not exist, RBAC
    forbidding a verb (403), an object the API server finds invalid (422).
    """

    exit_code = EXIT_BAD_INPUT


class StepTimeoutError(KubernetesError):
    """A step Job did not finish within ``kubernetes.step_timeout_seconds`` (exit code 1)."""


class JobExistsError(KubernetesError):
    """Creating a Job (or a run's Dask object) answered 409 AlreadyExists (the caller
    adopts it)."""


class KubernetesNotFoundError(KubernetesBadRequestError):
    """The object does not exist (404 in an existing namespace; exit 2 where it matters)."""


class ClusterError(MLOpsError):
    """The Dask cluster cannot be reached or lost a worker for good (exit code 1)."""


class EngineMissingError(ConfigError):
    """``data.engine: dask`` or ``lightgbm`` without the ``mlops[dask]`` extra (exit code 2)."""


class ExportError(BadInputError):
    """A model version cannot be exported for serving (it holds objects a model server
    does not have); a retry will not help (exit code 2)."""
