"""The Azure ML SDK v1 exceptions `Model.get_model_path` raises (same names and `.message`)."""

from __future__ import annotations

import contextlib
import json
import logging
from typing import Any

__all__ = ["AzureMLException", "ModelNotFoundException", "WebserviceException"]


class AzureMLException(Exception):
    """Base of the SDK's exceptions."""

    def __init__(self, exception_message: str, inner_exception: Any = None, **kwargs: Any) -> None:
        Exception.__init__(self, exception_message)
        self._exception_message = exception_message
        self._inner_exception = inner_exception

    @property
    def message(self) -> str:
        return self._exception_message

    @message.setter
    def message(self, value: str) -> None:
        self._exception_message = value

    @property
    def inner_exception(self) -> Any:
        return self._inner_exception

    def __str__(self) -> str:
        # The SDK's format: class, message, inner exception and an ErrorResponse JSON.
        error = json.dumps({"error": {"message": self.message}}, indent=4)
        return (
            f"{type(self).__name__}:\n\tMessage: {self.message}\n\tInnerException {self.inner_exception}"
            f"\n\tErrorResponse \n{error}"
        )


def _log(logger: logging.Logger | None, message: str) -> None:
    # The SDK logs the message to the logger it is given when the exception is made.
    if logger is not None:
        with contextlib.suppress(Exception):  # logging must not hide the real error
            logger.error(message)


class WebserviceException(AzureMLException):
    """A model-management failure (e.g. an invalid argument, a version directory with several entries)."""

    def __init__(
        self, exception_message: str, status_code: Any = None, logger: logging.Logger | None = None, **kwargs: Any
    ) -> None:
        super().__init__(exception_message, **kwargs)
        self.status_code = status_code
        _log(logger, exception_message)


class ModelNotFoundException(AzureMLException):
    """No model of that name (and version) where the deployment keeps its models."""

    def __init__(self, exception_message: str, logger: logging.Logger | None = None, **kwargs: Any) -> None:
        super().__init__(exception_message, **kwargs)
        _log(logger, exception_message)
