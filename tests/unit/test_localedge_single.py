"""Single-module mode in process: the HTTP API's request bodies (iotedgehubdev's and ours) into input messages,
the GET filters, and the one-module deployment `run --inputs` / `run --module` plan. The running edge is in
tests/integration/test_localedge_single.py."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest

from edgekit.limits import MESSAGE_LIMIT_BYTES
from edgekit.routes import Upstream
from localedge.__main__ import _parser
from localedge.deployment import INFERENCE, DeploymentError
from localedge.devapi import BadRequest, InputMessage, output_matches, parse_message
from localedge.modulecred import export_lines
from localedge.single import SingleModule, plan
from localedge.upstream import UpstreamMessage
from tests.helpers import reading

INPUTS = ("input1", "input2")


def parse(doc: Any) -> InputMessage:
    return parse_message(json.dumps(doc).encode(), INPUTS)


# --- request bodies -----------------------------------------------------------------------------------


def test_iotedgehubdevs_string_data_is_sent_as_its_json_text_with_a_fresh_message_id() -> None:
    msg = parse({"inputName": "input1", "data": "hello world"})
    assert (msg.input_name, msg.body) == ("input1", b'"hello world"')  # JSON.stringify: double-encoded, as iotedgehubdev
    assert set(msg.properties) == {"$.mid"} and uuid.UUID(msg.message_id)
    assert parse({"inputName": "input1", "data": "x"}).message_id != msg.message_id


def test_a_json_value_as_data_is_sent_as_compact_json() -> None:
    doc = {**reading(50.5), "név": "ü"}
    msg = parse({"inputName": "input2", "data": doc})
    assert msg.body == json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode()
    assert json.loads(msg.body) == doc
    for value, body in ((0, b"0"), (False, b"false"), ("", b'""'), ([1, 2], b"[1,2]")):
        assert parse({"inputName": "input1", "data": value}).body == body


def test_ids_and_custom_properties_become_the_messages_properties() -> None:
    msg = parse(
        {
            "inputName": "input1",
            "data": {"a": 1},
            "messageId": "m-1",
            "correlationId": "c-1",
            "userId": "u-1",
            "properties": {"batch": "7", "n": 3, "ok": True, "x": 2.5},
        }
    )
    assert msg.properties == {"$.mid": "m-1", "$.cid": "c-1", "$.uid": "u-1", "batch": "7", "n": "3", "ok": "true", "x": "2.5"}


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"inputName=input1", "not JSON"),
        (b"\xff\xfe", "not JSON"),
        (b"[1]", "a JSON object, not list"),
        (b'{"data": "x"}', "inputName is missing"),
        (b'{"inputName": 1, "data": "x"}', "inputName is missing or not a string"),
        (b'{"inputName": "input3", "data": "x"}', "unknown input 'input3': the module's inputs are input1, input2"),
        (b'{"inputName": "input1"}', "data is missing"),
        (b'{"inputName": "input1", "data": null}', "data is missing"),
        (b'{"inputName": "input1", "data": 1, "properties": [1]}', "properties is an object"),
        (b'{"inputName": "input1", "data": 1, "properties": {"$.mid": "x"}}', "'$.mid' is not a custom property name"),
        (
            b'{"inputName": "input1", "data": 1, "properties": {"a": {"b": 1}}}',
            "properties.a must be a string, number",
        ),
        (b'{"inputName": "input1", "data": 1, "messageId": 5}', "messageId must be a non-empty string"),
        (b'{"inputName": "input1", "data": 1, "correlationId": ""}', "correlationId must be a non-empty string"),
    ],
)
def test_a_bad_body_is_refused_with_its_reason(raw: bytes, reason: str) -> None:
    with pytest.raises(BadRequest) as err:
        parse_message(raw, INPUTS)
    assert reason in str(err.value)


def test_data_over_the_message_limit_is_refused() -> None:
    parse({"inputName": "input1", "data": "x" * (MESSAGE_LIMIT_BYTES - 2)})  # with its quotes: exactly the limit
    with pytest.raises(BadRequest, match=f"at most {MESSAGE_LIMIT_BYTES}"):
        parse({"inputName": "input1", "data": "x" * (MESSAGE_LIMIT_BYTES - 1)})


def test_get_filters_match_output_and_ids() -> None:
    msg = UpstreamMessage("target", "amlOutput", {"$.mid": "out-1", "$.cid": "in-1"}, b"{}", 0.0, 2, 1, 1, 0, None)
    assert output_matches(msg, {}) and output_matches(msg, {"output": "amlOutput", "correlationId": "in-1"})
    assert output_matches(msg, {"messageId": "out-1"})
    assert not output_matches(msg, {"output": "errorOutput"}) and not output_matches(msg, {"correlationId": "out-1"})


def test_modulecred_exports_are_shell_quoted() -> None:
    env = {"EdgeHubConnectionString": "HostName=h;DeviceId=d;SharedAccessKey=k=", "B": "it's"}
    assert (
        export_lines(env) == "export B='it'\"'\"'s'\nexport EdgeHubConnectionString='HostName=h;DeviceId=d;SharedAccessKey=k='\n"
    )


# --- the plan -----------------------------------------------------------------------------------------


def plan_of(*argv: str) -> SingleModule:
    return plan(_parser().parse_args(["run", *argv]))


def test_inputs_alone_serve_iotedgehubdevs_target_run_by_hand() -> None:
    single = plan_of("--inputs", " input1, input2,input1", "--env", "INPUT_NAMES=input1", "--env", "target:X=1")
    assert (single.module, single.inputs, single.by_hand, single.external, single.api_port) == (
        "target",
        INPUTS,
        True,
        ("target",),
        53000,
    )
    spec = single.deployment.modules["target"]
    assert spec.kind == INFERENCE and spec.env == {"HTTP_PORT": "0", "INPUT_NAMES": "input1", "X": "1"}
    [route] = single.deployment.routes
    assert route.source.reads_from("target") and isinstance(route.sink, Upstream)  # every output is shown


def test_module_runs_one_manifest_module_with_the_inputs_routed_into_it() -> None:
    single = plan_of("--module", "inference", "--inputs", "extra", "--api-port", "0", "--env", "inference:QUEUE_SIZE=8")
    assert (single.module, single.inputs, single.by_hand, single.external, single.api_port) == (
        "inference",
        ("amlInput", "extra"),
        False,
        (),
        0,
    )
    assert list(single.deployment.modules) == ["inference"]  # not the sensor
    spec = single.deployment.modules["inference"]
    assert spec.env["QUEUE_SIZE"] == "8" and spec.desired["inputNames"] == ["amlInput"]


@pytest.mark.parametrize(
    ("argv", "problem"),
    [
        (("--inputs", ","), "--inputs: name at least one input"),
        (("--inputs", "a/b"), "'a/b' cannot be an input name"),
        (("--inputs", "i", "--module-name", "bad name"), "--module-name 'bad name'"),
        (("--inputs", "i", "--command", "x=y"), "--manifest and --command go with --module NAME"),
        (("--inputs", "i", "--env", "other:X=1"), "the only module is 'target'"),
        (("--inputs", "i", "--api-port", "70000"), "--api-port 70000"),
        (("--module", "nope"), "--module nope: no such module"),
        (("--module", "tempSensor"), "module 'tempSensor': no route into any of its inputs"),
        (("--module", "inference", "--module-name", "x"), "--module-name goes with --inputs alone"),
    ],
)
def test_bad_single_module_options_are_named(argv: tuple[str, ...], problem: str) -> None:
    with pytest.raises(DeploymentError) as err:
        plan_of(*argv)
    assert any(problem in p for p in err.value.problems), err.value.problems
