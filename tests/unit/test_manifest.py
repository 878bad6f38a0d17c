"""The deployment manifest generator (deploy/), on tmp_path copies of the real template, module.json and .env.example,
and of tests/deploy/solutions/multi-module. The side-by-side comparison with iotedgedev itself is in
tests/integration/test_manifest_reference.py."""

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft4Validator

from deploy import checks, manifest
from deploy.expansion import expandvars
from deploy.manifest import ManifestError, Problem, generate, render

REPO = Path(__file__).resolve().parents[2]
MULTI = REPO / "tests" / "deploy" / "solutions" / "multi-module"
AGENT_PATH = '$.modulesContent.$edgeAgent["properties.desired"]'
HUB_PATH = '$.modulesContent.$edgeHub["properties.desired"]'
DESIRED_PATH = '$.modulesContent.inference["properties.desired"]'
MULTI_ENV = {
    "CONTAINER_REGISTRY_SERVER": "contoso.azurecr.io",
    "CONTAINER_REGISTRY_USERNAME": "contoso",
    "CONTAINER_REGISTRY_PASSWORD": "s3cret",
    "CONTAINER_REGISTRY_SERVER_PARTNER": "partner.example.com:5443",
    "CONTAINER_REGISTRY_USERNAME_PARTNER": "p",
    "CONTAINER_REGISTRY_PASSWORD_PARTNER": "pw",
    "SITE_NAME": "plant-7",
    "FILTER_THRESHOLD": "0.8",
    "FILTER_VERSION": "1.2.0",
    "STORE_TTL": "3600",
    "EDGE_DATA_ROOT": "/var/lib/edge-data",
}
UNQUOTED = ('"timeToLiveSecs": ${STORE_TTL}', '"timeToLiveSecs": "@STORE_TTL@"')  # the multi-module template's one


@pytest.fixture
def project(tmp_path: Path) -> Path:
    for name in ("deployment.template.json", "module.json", ".env.example"):
        shutil.copy(REPO / name, tmp_path / name)
    shutil.copy(REPO / ".env.example", tmp_path / ".env")
    return tmp_path


@pytest.fixture
def multi(tmp_path: Path) -> Path:
    shutil.copytree(MULTI, tmp_path / "multi")
    (tmp_path / "multi" / ".env").write_text("".join(f"{k}={v}\n" for k, v in MULTI_ENV.items()))
    return tmp_path / "multi"


def run(project: Path, **kwargs: Any) -> list[Path]:
    kwargs.setdefault("environ", {})  # the real environment must not leak into the expected values
    kwargs.setdefault("warn", lambda problem: None)
    return generate(
        project / "deployment.template.json", project / ".env", project / "module.json", out_dir=project / "config", **kwargs
    )


def problems(project: Path, **kwargs: Any) -> str:
    with pytest.raises(ManifestError) as info:
        run(project, **kwargs)
    assert not (project / "config").exists(), "nothing may be written when there is a problem"
    return str(info.value)


def warnings_of(project: Path, template: str = "deployment.template.json", **kwargs: Any) -> str:
    found: list[Problem] = []
    generate(project / template, project / ".env", environ=kwargs.pop("environ", {}), warn=found.append, **kwargs)
    return "\n".join(map(str, found))


def edit_template(project: Path, change: Callable[[dict[str, Any]], None], name: str = "deployment.template.json") -> None:
    path = project / name
    doc = json.loads(path.read_text().replace(*UNQUOTED))
    change(doc)
    path.write_text(json.dumps(doc, indent=2).replace(UNQUOTED[1], UNQUOTED[0]))


def desired(doc: dict[str, Any]) -> dict[str, Any]:
    return doc["modulesContent"]["$edgeAgent"]["properties.desired"]


def inference_desired(doc: dict[str, Any]) -> dict[str, Any]:
    return doc["modulesContent"]["inference"]["properties.desired"]


def joined_create_options(settings: dict[str, Any]) -> str:
    keys = ["createOptions", *sorted(k for k in settings if k.startswith("createOptions") and k != "createOptions")]
    assert all(len(settings[k]) <= 512 for k in keys)
    return "".join(settings[k] for k in keys)


# --- this repository: `make manifest` ---------------------------------------------------------------------------------


def test_example_env_gives_every_platform_valid_and_expanded(project: Path) -> None:
    written = run(project)

    platforms = ("amd64", "arm32v7", "arm64v8")
    assert written == [project / f"config/deployment.{p}.json" for p in platforms]
    template = json.loads((project / "deployment.template.json").read_text())
    schema = json.loads(manifest.SCHEMA_PATH.read_text())
    for platform, path in zip(platforms, written, strict=True):
        text = path.read_text()
        doc = json.loads(text)
        Draft4Validator(schema).validate(doc)
        assert "${" not in text and "$schema-template" not in doc
        agent = desired(doc)
        assert agent["schemaVersion"] == "1.1"
        assert doc["modulesContent"]["$edgeHub"]["properties.desired"]["schemaVersion"] == "1.2"
        assert agent["systemModules"]["edgeAgent"]["settings"]["image"] == "mcr.microsoft.com/azureiotedge-agent:1.6"
        assert agent["systemModules"]["edgeHub"]["settings"]["image"] == "mcr.microsoft.com/azureiotedge-hub:1.6"
        modules = agent["modules"]
        assert modules["tempSensor"]["settings"]["image"] == "mcr.microsoft.com/azureiotedge-simulated-temperature-sensor:1.6"
        assert modules["inference"]["settings"]["image"] == f"myregistry.azurecr.io/edge-inference:0.1.0-{platform}"
        assert agent["runtime"]["settings"]["registryCredentials"]["registry"] == {
            "username": "myregistry",
            "password": "replace-with-the-registry-password",
            "address": "myregistry.azurecr.io",
        }
        for group in ("modules", "systemModules"):
            for name, module in agent[group].items():
                original = desired(template)[group][name]["settings"]["createOptions"]
                assert isinstance(module["settings"]["createOptions"], str)
                assert json.loads(joined_create_options(module["settings"])) == original
        assert modules["inference"]["settings"]["createOptions"] == (
            '{"HostConfig":{"NanoCpus":1000000000,"Memory":268435456,"Binds":["edge-inference-journal:/var/lib/edge-inference"]}}'
        )
        assert (
            doc["modulesContent"]["$edgeHub"]["properties.desired"]["routes"]
            == (template["modulesContent"]["$edgeHub"]["properties.desired"]["routes"])
        )
        assert inference_desired(doc) == inference_desired(template)


def test_example_values_are_written_with_a_warning(project: Path) -> None:
    said = warnings_of(project)

    path = f"{AGENT_PATH}.runtime.settings.registryCredentials.registry.password"
    assert f"{path}: CONTAINER_REGISTRY_PASSWORD for registry myregistry.azurecr.io still holds the example's placeholder" in said
    assert "s3cret" not in said
    (project / ".env").write_text((project / ".env").read_text().replace("replace-with-the-registry-password", "s3cret"))
    assert "CONTAINER_REGISTRY_PASSWORD" not in warnings_of(project)


def test_runtime_version_defaults_to_1_6_and_can_be_chosen(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    lines = [line for line in (project / ".env").read_text().splitlines() if "_VERSION" not in line]
    (project / ".env").write_text("\n".join(lines) + "\n")
    run(project, platforms=["amd64"])
    doc = json.loads((project / "config/deployment.amd64.json").read_text())
    assert desired(doc)["systemModules"]["edgeHub"]["settings"]["image"] == "mcr.microsoft.com/azureiotedge-hub:1.6"
    assert "EDGE_RUNTIME_VERSION is not set: 1.6 (IoT Edge 1.6 LTS)" in capsys.readouterr().err

    run(project, platforms=["amd64"], environ={"EDGE_RUNTIME_VERSION": "1.5", "EDGEHUB_SCHEMA_VERSION": "1.1"})
    doc = json.loads((project / "config/deployment.amd64.json").read_text())
    assert desired(doc)["systemModules"]["edgeAgent"]["settings"]["image"] == "mcr.microsoft.com/azureiotedge-agent:1.5"
    assert doc["modulesContent"]["$edgeHub"]["properties.desired"]["schemaVersion"] == "1.1"


def test_container_tag_goes_between_version_and_platform(project: Path) -> None:
    run(project, platforms=["arm32v7"], environ={"CONTAINER_TAG": "ci42"})
    doc = json.loads((project / "config/deployment.arm32v7.json").read_text())
    assert desired(doc)["modules"]["inference"]["settings"]["image"] == "myregistry.azurecr.io/edge-inference:0.1.0-ci42-arm32v7"


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


def test_placeholder_outside_a_string_goes_in_as_json_as_iotedgedev_does(project: Path) -> None:
    path = project / "deployment.template.json"
    text = path.read_text()
    line = text[: text.index('"timeToLiveSecs": 7200')].count("\n") + 1
    path.write_text(text.replace('"timeToLiveSecs": 7200', '"timeToLiveSecs": ${STORE_TTL}'))

    message = problems(project)
    assert f"{path}: line {line}: ${{STORE_TTL}} is outside a JSON string and STORE_TTL is not set" in message
    assert "its value goes in as JSON text (e.g. a number), or quote the placeholder" in message

    run(project, platforms=["amd64"], environ={"STORE_TTL": "600"})
    doc = json.loads((project / "config/deployment.amd64.json").read_text())
    assert doc["modulesContent"]["$edgeHub"]["properties.desired"]["storeAndForwardConfiguration"]["timeToLiveSecs"] == 600


def test_missing_variable_names_variable_path_and_fix(project: Path) -> None:
    edit_template(project, lambda t: desired(t)["modules"]["inference"]["env"]["QUEUE_SIZE"].update(value="${QUEUE_SIZE}"))

    message = problems(project)

    assert f"{AGENT_PATH}.modules.inference.env.QUEUE_SIZE.value: ${{QUEUE_SIZE}}: QUEUE_SIZE is not set" in message
    assert f"add QUEUE_SIZE=<value> to {project / '.env'}" in message
    assert message.count("QUEUE_SIZE is not set") == 1, "the same problem on both platforms is listed once"
    assert "the module refuses" not in message, "a value still holding ${...} is not also judged by the settings model"


def test_unbraced_variables_are_expanded_and_an_unset_one_is_a_problem(project: Path) -> None:
    def change(t: dict[str, Any]) -> None:
        desired(t)["runtime"]["settings"]["registryCredentials"]["registry"]["username"] = "$CONTAINER_REGISTRY_USERNAME"
        desired(t)["modules"]["inference"]["env"]["MODEL_DIR"] = {"value": "$MODEL_ROOT/current"}

    edit_template(project, change)

    message = problems(project)
    assert f"{AGENT_PATH}.modules.inference.env.MODEL_DIR.value: $MODEL_ROOT: MODEL_ROOT is not set" in message
    assert "iotedgedev would leave $MODEL_ROOT in the manifest as written" in message

    run(project, platforms=["amd64"], environ={"MODEL_ROOT": "/models"})
    doc = json.loads((project / "config/deployment.amd64.json").read_text())
    assert desired(doc)["modules"]["inference"]["env"]["MODEL_DIR"] == {"value": "/models/current"}
    assert desired(doc)["runtime"]["settings"]["registryCredentials"]["registry"]["username"] == "myregistry"


def test_edge_words_are_left_alone_unless_the_environment_defines_them(project: Path) -> None:
    run(project, platforms=["amd64"])  # $edgeAgent, $edgeHub, $upstream, $schema-template: not variables
    doc = json.loads((project / "config/deployment.amd64.json").read_text())
    assert "$upstream" in doc["modulesContent"]["$edgeHub"]["properties.desired"]["routes"]["predictionsToUpstream"]

    shutil.rmtree(project / "config")
    message = problems(project, environ={"upstream": "oops"})
    assert "$upstream was replaced by the value of the variable upstream" in message
    assert "unset upstream in the environment and .env" in message


def test_expandvars_is_posix_expandvars() -> None:
    variables = {"A": "1", "B_2": "x$A"}
    for text in ("$A-${A}-$B_2-${B_2}-$C-${C}-${}-$-${A", "${MODULES.x}", "$$A", "a$A$A"):
        os_result = _posix_expandvars(text, variables)
        assert expandvars(text, variables)[0] == os_result, text


def _posix_expandvars(text: str, variables: dict[str, str]) -> str:
    import posixpath
    from unittest import mock

    with mock.patch.dict(os.environ, variables, clear=True):
        return posixpath.expandvars(text)


# --- routes -----------------------------------------------------------------------------------------------------------


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
    assert f"{HUB_PATH}.routes[\"bad.name\"]: route name 'bad.name' may not contain '.', '$', '#' or spaces" in message
    # A syntax error in a WHERE condition is refused: edgeHub would refuse the whole configuration.
    assert f"{HUB_PATH}.routes.badWhere: route 'badWhere': expected a value after '=' at col 38" in message
    assert "inferense" not in message and "ghost" not in message  # edgeHub takes those: warnings, below

    edit_template(
        project,
        lambda t: [t["modulesContent"]["$edgeHub"]["properties.desired"]["routes"].pop(k) for k in ("bad.name", "badWhere")],
    )
    said = warnings_of(project)
    assert (
        f"{HUB_PATH}.routes.sensorToInference: route 'sensorToInference' sends to module 'inferense', which is not deployed"
        in said
    )
    assert f"{HUB_PATH}.routes.fromGhost.route: route 'fromGhost' reads from module 'ghost', which is not deployed" in said
    assert "modules: tempSensor, inference" in said


def test_route_module_names_are_resolved_as_edgehub_resolves_them(project: Path) -> None:
    """A source's module in any case (edgeHub's BaseMessageSource.Match ignores case: IoTEdgeAndMlSample's
    turboFanRouter reaches turbofanRouter); a sink's by its exact name (edgeHub looks the connection up by id)."""

    def sources_in_other_case(t: dict[str, Any]) -> None:
        routes = t["modulesContent"]["$edgeHub"]["properties.desired"]["routes"]
        routes["predictionsToUpstream"] = routes["predictionsToUpstream"].replace("modules/inference/", "modules/INFERENCE/")

    edit_template(project, sources_in_other_case)
    run(project, platforms=["amd64"])

    def sink_in_other_case(t: dict[str, Any]) -> None:
        routes = t["modulesContent"]["$edgeHub"]["properties.desired"]["routes"]
        routes["sensorToInference"] = routes["sensorToInference"].replace("/modules/inference/", "/modules/Inference/")

    edit_template(project, sink_in_other_case)  # edgeHub takes it, but delivers nothing: a warning saying so
    assert "sends to module 'Inference', which is not deployed" in warnings_of(project, platforms=["amd64"])


def test_routes_are_judged_by_edgehubs_own_rules(project: Path) -> None:
    """edgeHub's compiler decides (edgekit.routes): a function it lacks is refused; a source only edgeHub can feed
    (/twinChangeNotifications) is accepted with a warning that the local edge cannot exercise it."""

    def change(t: dict[str, Any]) -> None:
        routes = t["modulesContent"]["$edgeHub"]["properties.desired"]["routes"]
        routes["fancy"] = (
            'FROM /messages/modules/tempSensor/* WHERE FANCY($body.x) = 1 INTO BrokeredEndpoint("/modules/inference/inputs/x")'
        )
        routes["twin"] = "FROM /twinChangeNotifications INTO $upstream"

    edit_template(project, change)
    message = problems(project)
    assert "route 'fancy'" in message and "FANCY" in message
    assert "route 'twin'" not in message

    edit_template(project, lambda t: t["modulesContent"]["$edgeHub"]["properties.desired"]["routes"].pop("fancy"))
    said = warnings_of(project)
    assert f"{HUB_PATH}.routes.twin: route 'twin' is for edgeHub; the local edge (make edge) cannot exercise it" in said


def test_object_routes_need_edgehub_schema_1_1(project: Path) -> None:
    def change(t: dict[str, Any]) -> None:
        hub = t["modulesContent"]["$edgeHub"]["properties.desired"]
        hub["routes"]["errorsToUpstream"] = {"route": hub["routes"]["errorsToUpstream"], "priority": 0}

    edit_template(project, change)
    message = problems(project, environ={"EDGEHUB_SCHEMA_VERSION": "1.0"})
    assert f"{HUB_PATH}.schemaVersion: route 'errorsToUpstream' has the object form" in message
    run(project)  # with 1.6's 1.2


# --- modules, images, registries ------------------------------------------------------------------------------------


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
    assert "route 'sensorToInference' reads from module 'tempSensor'" not in message  # a warning: edgeHub takes the route


def test_an_image_name_the_runtime_cannot_pull(project: Path) -> None:
    edit_template(
        project,
        lambda t: desired(t)["modules"]["tempSensor"]["settings"].update(image="<registry_name>.azurecr.io/sensor:1"),
    )
    message = problems(project)
    path = f"{AGENT_PATH}.modules.tempSensor.settings.image"
    assert f"{path}: '<registry_name>.azurecr.io/sensor:1' is not an image reference the runtime can pull" in message
    for good in ("mcr.microsoft.com/a/b:1.6", "localhost:5000/x_y:0.0.1-RC-amd64.debug", "ubuntu", "a.io/b@sha256:" + "0" * 64):
        assert checks.IMAGE_REFERENCE.match(good), good
    for bad in ("registry.io/Upper:1", "__X", "a.io/b:", "a.io//b"):
        assert not checks.IMAGE_REFERENCE.match(bad), bad


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


def test_every_registry_the_manifest_pulls_from_needs_a_login(multi: Path) -> None:
    edit_template(multi, lambda t: desired(t)["runtime"]["settings"]["registryCredentials"].pop("partner"))
    with pytest.raises(ManifestError) as info:
        generate(multi / "deployment.template.json", environ={}, warn=lambda p: None)
    message = str(info.value)
    assert "no registry credentials for partner.example.com:5443, where the image partner.example.com:5443/scorer" in message
    assert "CONTAINER_REGISTRY_USERNAME_PARTNER, CONTAINER_REGISTRY_PASSWORD_PARTNER" in message

    def other_host(t: dict[str, Any]) -> None:  # a registry no variable names: maybe public, so only a warning
        desired(t)["modules"]["partnerModel"]["settings"]["image"] = "quay.io/someone/scorer:2"

    edit_template(multi, other_host)
    said = warnings_of(multi)
    assert "no registry credentials for quay.io, where the image quay.io/someone/scorer:2 is pulled from" in said
    assert "(fine if it is a public registry)" in said


def test_missing_env_file_points_at_the_example(project: Path) -> None:
    (project / ".env").unlink()

    message = problems(project)

    assert f"{project / '.env'}: not found" in message
    assert f"fix: cp {project / '.env.example'} {project / '.env'}" in message


def test_unknown_platform_and_module_placeholder(project: Path) -> None:
    edit_template(project, lambda t: desired(t)["modules"]["tempSensor"]["settings"].update(image="${MODULES.other.amd64}"))

    message = problems(project, platforms=["riscv64", "amd64"])

    has = "(it has amd64, arm32v7, arm64v8)"
    assert f"${{MODULES.inference}}: {project / 'module.json'} has no platform 'riscv64' {has}" in message
    assert "${MODULES.other.amd64}: no module named 'other'" in message
    assert "use one of the solution's modules (inference)" in message


def test_module_placeholders_are_replaced_as_a_whole_image_only(project: Path) -> None:
    def change(t: dict[str, Any]) -> None:
        desired(t)["modules"]["tempSensor"]["settings"]["image"] = "${MODULES.inference}-extra"
        desired(t)["modules"]["inference"]["env"]["IMAGE"] = {"value": "${MODULES.inference}"}

    edit_template(project, change)
    message = problems(project)
    assert "'${MODULES.inference}-extra': iotedgedev replaces a placeholder only when it is the whole image" in message
    assert f"{AGENT_PATH}.modules.inference.env.IMAGE.value: '${{MODULES.inference}}' holds a ${{MODULES...}}" in message


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


# --- the inference module's own settings ------------------------------------------------------------------------------


def test_desired_properties_are_checked_by_the_module_settings_model(project: Path) -> None:
    def change(t: dict[str, Any]) -> None:
        twin = inference_desired(t)
        twin.update(maxBatchSize=0, logLevel="LOUD", queueSize=10, colour="red")
        twin["outputName"] = twin["errorOutputName"]

    edit_template(project, change)
    message = problems(project)

    assert f"{DESIRED_PATH}.maxBatchSize: the module refuses desired properties: maxBatchSize: 0 must be at least 1" in message
    assert f"{DESIRED_PATH}.logLevel: the module refuses desired properties: logLevel:" in message
    assert f"{DESIRED_PATH}.queueSize: the module refuses desired properties: queueSize: cannot change while running" in message
    assert f"{DESIRED_PATH}.colour: the module refuses desired properties: colour: not a setting" in message
    assert "errorOutputName: must differ from OUTPUT_NAME" in message


def test_module_env_is_checked_by_the_module_settings_model(project: Path) -> None:
    def change(t: dict[str, Any]) -> None:
        module = desired(t)["modules"]["inference"]
        module["env"]["QUEUE_SIZE"] = {"value": "0"}
        module["env"]["HTTP_PORT"] = {"value": 70000}
        module["env"]["QUEUE_SIZ"] = {"value": "5"}
        module["settings"]["createOptions"]["Env"] = ["MAX_WAIT_MS=soon", "IOTEDGE_MODULEID=x"]

    edit_template(project, change)
    message = problems(project)

    module = f"{AGENT_PATH}.modules.inference"
    assert f"{module}.env.QUEUE_SIZE.value: the module refuses QUEUE_SIZE: 0 must be at least 1" in message
    assert f"{module}.env.HTTP_PORT.value: the module refuses HTTP_PORT: 70000 must be between 0 and 65535" in message
    assert f"{module}.settings.createOptions.Env[0]: the module refuses MAX_WAIT_MS='soon'" in message
    assert "IOTEDGE_MODULEID" not in message and "QUEUE_SIZ " not in message

    def fix(t: dict[str, Any]) -> None:
        module = desired(t)["modules"]["inference"]
        module["env"].update(QUEUE_SIZE={"value": "16"}, HTTP_PORT={"value": 5001})
        module["settings"]["createOptions"]["Env"] = ["MAX_WAIT_MS=5"]

    edit_template(project, fix)
    assert f"{module}.env.QUEUE_SIZ.value: QUEUE_SIZ is not a variable the module reads" in warnings_of(project)


def test_another_solutions_modules_are_not_judged_by_our_settings(multi: Path) -> None:
    generate(multi / "deployment.template.json", environ={}, warn=lambda p: None)  # filter's desired "window": not ours


# --- iotedgedev's solution model --------------------------------------------------------------------------------------


def test_a_multi_module_solution_resolves_modules_moduledir_tag_and_case(multi: Path) -> None:
    written = generate(multi / "deployment.template.json", environ={"CONTAINER_TAG": "ci42"}, warn=lambda p: None)

    assert written == [multi / "config/deployment.amd64.json", multi / "config/deployment.arm64v8.json"]
    doc = json.loads(written[0].read_text())
    modules = desired(doc)["modules"]
    assert modules["filter"]["settings"]["image"] == "contoso.azurecr.io/filter:1.2.0-ci42-amd64"  # repository lowercased
    assert modules["Uploader"]["settings"]["image"] == "contoso.azurecr.io/uploader:0.3.0-ci42-amd64"
    assert modules["probe"]["settings"]["image"] == "contoso.azurecr.io/probe:2.0.0-ci42-amd64"  # ${MODULEDIR<./tools/probe>}
    assert modules["partnerModel"]["settings"]["image"] == "partner.example.com:5443/scorer:2.1-amd64"
    assert desired(doc)["runtime"]["settings"]["registryCredentials"]["main"]["username"] == "contoso"  # $VAR unbraced
    hub = doc["modulesContent"]["$edgeHub"]["properties.desired"]
    assert hub["storeAndForwardConfiguration"]["timeToLiveSecs"] == 3600  # a placeholder outside a string: a number
    options = json.loads(joined_create_options(modules["filter"]["settings"]))
    assert options["Env"] == ["SITE=plant-7", "GREETING=grüße"] and "createOptions01" in modules["filter"]["settings"]
    arm = desired(json.loads(written[1].read_text()))["modules"]
    assert arm["probe"]["settings"]["image"] == "contoso.azurecr.io/probe:2.0.0-ci42-arm64v8"


def test_debug_and_explicit_platform_placeholders(multi: Path) -> None:
    [written] = generate(multi / "deployment.debug.template.json", platforms=["amd64"], environ={}, warn=lambda p: None)

    assert written.name == "deployment.debug.amd64.json"
    modules = desired(json.loads(written.read_text()))["modules"]
    assert modules["filter"]["settings"]["image"] == "contoso.azurecr.io/filter:1.2.0-amd64.debug"
    assert modules["uploader"]["settings"]["image"] == "contoso.azurecr.io/uploader:0.3.0-arm64v8"

    with pytest.raises(ManifestError) as info:
        generate(multi / "deployment.debug.template.json", platforms=["arm32v7"], environ={}, warn=lambda p: None)
    assert "${MODULES.filter.debug}: " in str(info.value) and "has no platform 'arm32v7.debug'" in str(info.value)


def test_modules_path_and_default_platform_come_from_env(multi: Path) -> None:
    (multi / "modules").rename(multi / "mods")
    with pytest.raises(ManifestError) as info:
        generate(multi / "deployment.template.json", environ={}, warn=lambda p: None)
    assert f"${{MODULES.filter}}: no module named 'filter' (iotedgedev reads {multi / 'modules'}/filter/module.json)" in str(
        info.value
    )

    written = generate(
        multi / "deployment.template.json", environ={"MODULES_PATH": "mods", "DEFAULT_PLATFORM": "arm64v8"}, warn=lambda p: None
    )
    assert [p.name for p in written] == ["deployment.arm64v8.json"]


def test_a_layered_deployment_is_expanded_without_the_full_manifest_checks(multi: Path) -> None:
    [written] = generate(multi / "layered.template.json", platforms=["amd64"], environ={}, warn=lambda p: None)

    doc = json.loads(written.read_text())
    module = doc["content"]["modulesContent"]["$edgeAgent"]["properties.desired.modules.uploader"]
    assert module["settings"] == {
        "image": "contoso.azurecr.io/uploader:0.3.0-amd64",
        "createOptions": '{"HostConfig":{"Privileged":false}}',
    }


def test_moduledir_written_with_a_backslash_reads_the_same_folder(multi: Path) -> None:
    edit_template(multi, lambda t: desired(t)["modules"]["probe"]["settings"].update(image="${MODULEDIR<.\\tools\\probe>}"))
    rendered = render(multi / "deployment.template.json", platforms=["amd64"], environ={})
    assert rendered.problems == []
    assert desired(rendered.docs["amd64"])["modules"]["probe"]["settings"]["image"] == "contoso.azurecr.io/probe:2.0.0-amd64"

    edit_template(multi, lambda t: desired(t)["modules"]["probe"]["settings"].update(image="${MODULEDIR<./tools/none>}"))
    message = "\n".join(map(str, render(multi / "deployment.template.json", environ={}).problems))
    assert f"${{MODULEDIR<./tools/none>}}: there is no module.json at {multi / 'tools/none/module.json'}" in message


def test_output_names_follow_iotedgedev_with_the_platform_always_in() -> None:
    assert manifest.output_name(Path("x/deployment.template.json"), "amd64") == "deployment.amd64.json"
    assert manifest.output_name(Path("deployment.debug.template.json"), "amd64") == "deployment.debug.amd64.json"
    assert manifest.output_name(Path("iot-workshop-deployment-template.json"), "arm32v7") == (
        "iot-workshop-deployment-template.arm32v7.json"
    )
    assert manifest.output_name(Path("manifest"), "amd64") == "deployment.amd64.json"


def test_main_lists_every_problem_and_exits_2(
    project: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in [k for k in os.environ if k.startswith(("CONTAINER_REGISTRY_", "EDGE", "CONTAINER_TAG", "DEFAULT_PLATFORM"))]:
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


def test_main_on_another_solution_writes_into_its_config_folder(multi: Path, capsys: pytest.CaptureFixture[str]) -> None:
    monkey_env = {k: v for k, v in os.environ.items() if not k.startswith(("CONTAINER_", "EDGE", "DEFAULT_PLATFORM", "MODULES"))}
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(os, "environ", monkey_env)
        assert manifest.main(["--template", str(multi / "deployment.template.json"), "--platform", "amd64"]) == 0
    assert capsys.readouterr().out == f"wrote {multi / 'config/deployment.amd64.json'}\n"


def test_schema_is_the_public_one() -> None:
    schema = json.loads(manifest.SCHEMA_PATH.read_text())
    Draft4Validator.check_schema(schema)
    assert schema["id"] == "https://json.schemastore.org/azure-iot-edge-deployment-2.0.json"
