"""The module's settings: one typed model (model.py), the twin's view of it (twin.py), its docs (docs.py)."""

from app.settings.model import ENV_NAMES, FIELDS, REPO_ROOT, ConfigError, Settings, load_settings, validate
from app.settings.model_spec import ModelSpec
from app.settings.twin import LIVE, desired_model, reported_settings, settings_from_desired

__all__ = [
    "ENV_NAMES",
    "FIELDS",
    "LIVE",
    "REPO_ROOT",
    "ConfigError",
    "ModelSpec",
    "Settings",
    "desired_model",
    "load_settings",
    "reported_settings",
    "settings_from_desired",
    "validate",
]
