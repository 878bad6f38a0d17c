"""`azureml.core` of the stand-in SDK: only `Model`."""

from .model import Model

__all__ = ["Model"]
