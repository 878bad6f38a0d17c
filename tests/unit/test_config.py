"""Settings from the environment: defaults, parsing, and every invalid value named."""

from __future__ import annotations

import pytest

from app.settings import FIELDS, REPO_ROOT, ConfigError, Settings, load_settings
from app.settings.docs import blocks
from edgekit.typed_settings import default_text


def test_defaults() -> None:
    s = load_settings({})
    assert s.model_dir.endswith("model")
    assert s.input_names == ("amlInput",) and s.output_name == "amlOutput" and s.error_output_name == "errorOutput"
    assert s.max_batch_size == 256 and s.max_wait_ms == 0 and not s.aggregate
    assert s.aggregate_max_bytes == 4096 and s.max_message_bytes == 262144


def test_values_are_parsed() -> None:
    s = load_settings(
        {
            "MODEL_DIR": "/models/m",
            "INPUT_NAMES": "a, b",
            "FEATURES": "x.y,z",
            "MAX_BATCH_SIZE": "64",
            "MAX_WAIT_MS": "2.5",
            "AGGREGATE": "yes",
            "AGGREGATE_MAX_BYTES": "8192",
            "LOG_LEVEL": "debug",
        }
    )
    assert s.model_dir == "/models/m" and s.input_names == ("a", "b") and s.features == ("x.y", "z")
    assert s.max_batch_size == 64 and s.max_wait_ms == 2.5 and s.aggregate and s.aggregate_max_bytes == 8192


def test_every_problem_is_named_at_once() -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(
            {
                "MAX_BATCH_SIZE": "0",
                "AGGREGATE_MAX_BYTES": "300000",
                "OUTPUT_NAME": "x",
                "ERROR_OUTPUT_NAME": "x",
                "LOG_LEVEL": "loud",
                "MAX_MESSAGE_BYTES": "0",
            }
        )
    text = str(info.value)
    for name in ("MAX_BATCH_SIZE", "AGGREGATE_MAX_BYTES", "ERROR_OUTPUT_NAME", "LOG_LEVEL", "MAX_MESSAGE_BYTES"):
        assert name in text


def test_unparseable_values_are_named() -> None:
    with pytest.raises(ConfigError, match="MAX_WAIT_MS='soon'"):
        load_settings({"MAX_WAIT_MS": "soon"})


def test_replace_validates() -> None:
    with pytest.raises(ConfigError, match="QUEUE_SIZE"):
        Settings().replace(queue_size=0)


def test_azureml_server_variables_are_the_defaults_of_model_dir_and_score_script() -> None:
    azureml = {"AZUREML_MODEL_DIR": "/var/azureml-app/model", "AZUREML_ENTRY_SCRIPT": "/var/azureml-app/score.py"}
    settings = load_settings(azureml)
    assert (settings.model_dir, settings.score_script) == ("/var/azureml-app/model", "/var/azureml-app/score.py")
    ours = load_settings(azureml | {"MODEL_DIR": "/x", "SCORE_SCRIPT": "/y.py"})  # ours win when both are set
    assert (ours.model_dir, ours.score_script) == ("/x", "/y.py")


def test_every_setting_maps_to_a_field() -> None:
    fields = set(Settings.__dataclass_fields__)
    assert {f.name for f in FIELDS} == fields
    assert len({f.spec.env for f in FIELDS}) == len({f.twin for f in FIELDS}) == len(fields)  # no name twice


def test_readme_lists_every_setting_with_its_help() -> None:
    readme = (REPO_ROOT / "README.md").read_text()
    for f in FIELDS:
        assert f"| `{f.spec.env}` | {f.spec.help} Default: {default_text(f)} |" in readme
    for block in blocks():
        assert block in readme, "README's settings tables are stale: paste `python -m app settings --markdown`"
