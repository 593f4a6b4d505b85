"""The errors of the SDK and the command, with the command's exit code; stdlib only, so the CLI starts fast."""

from __future__ import annotations


class ModelDeployError(RuntimeError):
    """What the cluster said or did not say, or a usage mistake; the message is one line."""

    exit_code = 4


class ClusterUnreachableError(ModelDeployError):
    pass


class CRDNotInstalledError(ModelDeployError):
    pass


class ForbiddenError(ModelDeployError):
    pass


class NotFoundError(ModelDeployError):
    pass


class InvalidSpecError(ModelDeployError):
    """The API server refused the object (its schema or a CEL rule), or the manifest is not a ModelDeployment."""

    exit_code = 3


class NoAnswerError(ModelDeployError):
    """The operator did not answer a control within the wait (is it running?)."""

    exit_code = 2
