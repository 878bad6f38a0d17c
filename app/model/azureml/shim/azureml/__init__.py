"""A minimal stand-in for the Azure ML SDK v1 (`azureml-core`): only what deployed score scripts use, i.e.
`azureml.core.model.Model.get_model_path` and the `azureml.exceptions` it raises.

app.model.azureml.entry puts this directory's parent on sys.path only when the real SDK is not importable. Like the
real package, `azureml` is a namespace: other installed azureml-* distributions stay importable.
"""

from pkgutil import extend_path

__path__ = extend_path(__path__, __name__)
