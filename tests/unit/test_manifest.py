"""The deployment manifest generator (deploy/), on tmp_path copies of the real template, module.json and .env.example."""

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft4Validator

from deploy import manifest
from deploy.manifest import ManifestError, generate

REPO = Path(__file__).resolve().parents[2]
AGENT = ("modulesContent", "$edgeAgent", "properties.desired")
AGENT_PATH = '$.modulesContent.$edgeAgent["properties.desired"]'
HUB_PATH = '$.modulesContent.$edgeHub["properties.desired"]'


@pytest.fixture
def project(tmp_path: Path) -> Path:
    for name in ("deployment.template.json", "module.json", ".env.example"):
        shutil.copy(REPO / name, tmp_path / name)
    shutil.copy(REPO / ".env.example", tmp_path / ".env")
    return tmp_path


def run(project: Path, **kwargs: Any) -> list[Path]:
    kwargs.setdefault("environ", {})  # the real environment must not leak into the expected values
    return generate(
        project / "deployment.template.json", project / ".env", project / "module.json", out_dir=project / "config", **kwargs
    )


def problems(project: Path, **kwargs: Any) -> str:
    with pytest.raises(ManifestError) as info:
        run(project, **kwargs)
    assert not (project / "config").exists(), "nothing may be written when there is a problem"
    return str(info.value)


def edit_template(project: Path, change: Callable[[dict[str, Any]], None]) -> None:
    path = project / "deployment.template.json"
    doc = json.loads(path.read_text())
    change(doc)
    path.write_text(json.dumps(doc, indent=2))


def desired(doc: dict[str, Any]) -> dict[str, Any]:
    return doc["modulesContent"]["$edgeAgent"]["properties.desired"]


def joined_create_options(settings: dict[str, Any]) -> str:
    keys = ["createOptions", *sorted(k for k in settings if k.startswith("createOptions") and k != "createOptions")]
    assert all(len(settings[k]) <= 512 for k in keys)
    return "".join(settings[k] for k in keys)


def test_example_env_gives_both_platforms_valid_and_expanded(project: Path) -> None:
    written = run(project)

    assert written == [project / "config/deployment.amd64.json", project / "config/deployment.arm32v7.json"]
    template = json.loads((project / "deployment.template.json").read_text())
    schema = json.loads(manifest.SCHEMA_PATH.read_text())
    for platform, path in zip(("amd64", "arm32v7"), written, strict=True):
        text = path.read_text()
        doc = json.loads(text)
        Draft4Validator(schema).validate(doc)
        assert (
            manifest.check(doc, template, f"myregistry.azurecr.io/edge-inference:0.1.0-{platform}", "t", Path(".env"), True) == []
        )
        assert "${" not in text and "$schema-template" not in doc
        modules = desired(doc)["modules"]
        assert modules["inference"]["settings"]["image"] == f"myregistry.azurecr.io/edge-inference:0.1.0-{platform}"
        assert desired(doc)["runtime"]["settings"]["registryCredentials"]["registry"] == {
            "username": "myregistry",
            "password": "replace-with-the-registry-password",
            "address": "myregistry.azurecr.io",
        }
        for group in ("modules", "systemModules"):
            for name, module in desired(doc)[group].items():
                original = desired(template)[group][name]["settings"]["createOptions"]
                assert isinstance(module["settings"]["createOptions"], str)
                assert json.loads(joined_create_options(module["settings"])) == original
        assert modules["inference"]["settings"]["createOptions"] == (
            '{"HostConfig":{"NanoCpus":1000000000,"Memory":268435456,"Binds":["edge-inference-journal:/var/lib/edge-inference"]}}'
        )
        assert doc["modulesContent"]["$edgeHub"] == template["modulesContent"]["$edgeHub"]


def test_large_create_options_split_into_512_character_strings(project: Path) -> None:
    options = {"HostConfig": {"Memory": 1}, "Labels": {f"label{i}": "v" * 40 for i in range(30)}}
    edit_template(project, lambda t: desired(t)["modules"]["inference"]["settings"].update(createOptions=options))

    run(project, platforms=["amd64"])

    settings = desired(json.loads((project / "config/deployment.amd64.json").read_text()))["modules"]["inference"]["settings"]
    minified = json.dumps(options, separators=(",", ":"))
    chunks = -(-len(minified) // 512)
    assert chunks >= 3
    assert sorted(settings) == ["createOptions"] + [f"createOptions{n:02d}" for n in range(1, chunks)] + ["image"]
    assert len(settings["createOptions"]) == len(settings["createOptions01"]) == 512
    assert joined_create_options(settings) == minified and json.loads(minified) == options


def test_string_create_options_kept_as_written(project: Path) -> None:
    edit_template(project, lambda t: desired(t)["modules"]["tempSensor"]["settings"].update(createOptions='{ "User": "1000" }'))
    run(project, platforms=["amd64"])
    doc = json.loads((project / "config/deployment.amd64.json").read_text())
    assert desired(doc)["modules"]["tempSensor"]["settings"]["createOptions"] == '{ "User": "1000" }'


def test_unquoted_placeholder_names_file_and_line(project: Path) -> None:
    path = project / "deployment.template.json"
    text = path.read_text()
    line = text[: text.index('"timeToLiveSecs": 7200')].count("\n") + 1
    path.write_text(text.replace('"timeToLiveSecs": 7200', '"timeToLiveSecs": ${STORE_TTL}'))

    message = problems(project)

    assert f"{path}: line {line}: placeholder ${{STORE_TTL}} is not inside a quoted JSON string" in message
    assert 'quote it ("${STORE_TTL}")' in message


def test_missing_variable_names_variable_path_and_fix(project: Path) -> None:
    edit_template(project, lambda t: desired(t)["modules"]["inference"]["env"]["QUEUE_SIZE"].update(value="${QUEUE_SIZE}"))

    message = problems(project)

    assert f"{AGENT_PATH}.modules.inference.env.QUEUE_SIZE.value: ${{QUEUE_SIZE}}: QUEUE_SIZE is not set" in message
    assert f"add QUEUE_SIZE=<value> to {project / '.env'}" in message
    assert message.count("QUEUE_SIZE is not set") == 1, "the same problem on both platforms is listed once"


def test_unknown_route_modules_are_named(project: Path) -> None:
    def change(t: dict[str, Any]) -> None:
        routes = t["modulesContent"]["$edgeHub"]["properties.desired"]["routes"]
        routes["sensorToInference"] = routes["sensorToInference"].replace("/modules/inference/", "/modules/inferense/")
        routes["bad.name"] = "FROM /messages/* INTO $upstream"
        routes["fromGhost"] = {
            "route": "FROM /messages/modules/ghost/outputs/* INTO $upstream",
            "priority": 1,
            "timeToLiveSecs": 60,
        }
        routes["badWhere"] = "FROM /messages/* WHERE $body.label = INTO $upstream"

    edit_template(project, change)

    message = problems(project)

    assert (
        f"{HUB_PATH}.routes.sensorToInference: route 'sensorToInference' sends to module 'inferense', which is not deployed"
        in message
    )
    assert f"{HUB_PATH}.routes.fromGhost.route: route 'fromGhost' reads from module 'ghost', which is not deployed" in message
    assert "modules: tempSensor, inference" in message
    assert f"{HUB_PATH}.routes[\"bad.name\"]: route name 'bad.name' may not contain '.', '$', '#' or spaces" in message
    # WHERE conditions are checked with edgeHub's grammar (the local edge's parser) before anything is deployed.
    assert f"{HUB_PATH}.routes.badWhere: route 'badWhere': expected a value after '=' at col 38, got 'INTO'" in message


def test_create_options_over_4_kb_is_an_error_with_path_and_size(project: Path) -> None:
    options = {"Labels": {"big": "x" * 5000}}
    edit_template(project, lambda t: desired(t)["modules"]["inference"]["settings"].update(createOptions=options))

    message = problems(project)

    size = len(json.dumps(options, separators=(",", ":")))
    assert f"{AGENT_PATH}.modules.inference.settings.createOptions: createOptions is {size} characters minified" in message
    assert "at most 4096 (8 strings of 512)" in message
    assert "schema:" not in message, "the schema's complaint about the same value is left out"


def test_bad_module_name(project: Path) -> None:
    edit_template(project, lambda t: desired(t)["modules"].update({"temp sensor": desired(t)["modules"].pop("tempSensor")}))

    message = problems(project)

    assert f"{AGENT_PATH}.modules[\"temp sensor\"]: module name 'temp sensor' does not match ^[a-zA-Z0-9_-]+$" in message
    assert "route 'sensorToInference' reads from module 'tempSensor', which is not deployed" in message


def test_empty_registry_password_names_the_env_variable(project: Path) -> None:
    env = project / ".env"
    env.write_text(
        env.read_text().replace("CONTAINER_REGISTRY_PASSWORD=replace-with-the-registry-password", "CONTAINER_REGISTRY_PASSWORD=")
    )

    message = problems(project)

    assert (
        f"{AGENT_PATH}.runtime.settings.registryCredentials.registry.password: empty password for registry myregistry.azurecr.io"
        in message
    )
    assert f"set CONTAINER_REGISTRY_PASSWORD in {env}" in message


def test_no_registry_credentials_for_the_module_registry(project: Path) -> None:
    edit_template(project, lambda t: desired(t)["runtime"]["settings"].pop("registryCredentials"))

    message = problems(project)

    assert f"{AGENT_PATH}.runtime.settings.registryCredentials: no registry credentials for myregistry.azurecr.io" in message


def test_missing_env_file_points_at_the_example(project: Path) -> None:
    (project / ".env").unlink()

    message = problems(project)

    assert f"{project / '.env'}: not found" in message
    assert f"fix: cp {project / '.env.example'} {project / '.env'}" in message


def test_unknown_platform_and_module_placeholder(project: Path) -> None:
    edit_template(project, lambda t: desired(t)["modules"]["tempSensor"]["settings"].update(image="${MODULES.other.amd64}"))

    message = problems(project, platforms=["arm64v8", "amd64"])

    assert "platform 'arm64v8' is not listed" in message
    assert "${MODULES.other.amd64}: no module named 'other' in this repository" in message


def test_environment_overrides_env_file_and_says_so(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run(
        project,
        platforms=["amd64"],
        environ={"CONTAINER_REGISTRY_SERVER": "other.azurecr.io", "CONTAINER_REGISTRY_PASSWORD": "s3cret"},
    )

    doc = json.loads((project / "config/deployment.amd64.json").read_text())
    assert desired(doc)["modules"]["inference"]["settings"]["image"] == "other.azurecr.io/edge-inference:0.1.0-amd64"
    assert desired(doc)["runtime"]["settings"]["registryCredentials"]["registry"]["password"] == "s3cret"
    stderr = capsys.readouterr().err
    assert "CONTAINER_REGISTRY_SERVER is taken from the environment" in stderr and "s3cret" not in stderr


def test_main_lists_every_problem_and_exits_2(
    project: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in [k for k in os.environ if k.startswith("CONTAINER_REGISTRY_")]:
        monkeypatch.delenv(name)  # main() reads the real environment
    edit_template(project, lambda t: desired(t)["modules"]["inference"]["env"]["QUEUE_SIZE"].update(value="${QUEUE_SIZE}"))
    (project / ".env").write_text("CONTAINER_REGISTRY_SERVER=myregistry.azurecr.io\nCONTAINER_REGISTRY_USERNAME=u\n")
    args = ["--template", str(project / "deployment.template.json"), "--env", str(project / ".env")]
    args += ["--module-json", str(project / "module.json"), "--out", str(project / "config")]

    assert manifest.main(args) == 2

    err = capsys.readouterr().err
    assert "error: no deployment manifest written; 2 problem(s):" in err
    assert "modules.inference.env.QUEUE_SIZE.value: ${QUEUE_SIZE}: QUEUE_SIZE is not set" in err
    assert "registryCredentials.registry.password: ${CONTAINER_REGISTRY_PASSWORD}: CONTAINER_REGISTRY_PASSWORD is not set" in err
    assert not (project / "config").exists()


def test_schema_is_the_public_one() -> None:
    schema = json.loads(manifest.SCHEMA_PATH.read_text())
    Draft4Validator.check_schema(schema)
    assert schema["id"] == "https://json.schemastore.org/azure-iot-edge-deployment-2.0.json"
