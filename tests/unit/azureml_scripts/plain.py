"""Undecorated run(): the text it gets is echoed back, or a "kind:..." command picks what it returns."""

import json
import os

import numpy as np
from azureml.contrib.services.aml_response import AMLResponse

state = {}


def init():
    state["model_dir"] = os.environ.get("AZUREML_MODEL_DIR")
    state["entry_script"] = os.environ.get("AZUREML_ENTRY_SCRIPT")


RETURNS = {
    "dict": lambda: {"a": 1, "b": [1.5, None, True], "c": "é"},
    "list": lambda: [1, 2, 3],
    "tuple": lambda: (1, "x"),
    "str": lambda: "hello",
    "json_str": lambda: json.dumps({"a": 1}),
    "bytes": lambda: b"raw",
    "none": lambda: None,
    "int": lambda: 7,
    "nan": lambda: {"x": float("nan"), "y": float("inf")},
    "np_array": lambda: np.array([1.0, 2.0]),
    "np_float64": lambda: np.float64(1.25),
    "np_float32": lambda: np.float32(1.25),
    "np_int64": lambda: np.int64(3),
    "np_tolist": lambda: np.array([[1, 2], [3, 4]]).tolist(),
    "int_keys": lambda: {1: "one", 2.5: "x", None: "n"},
    "set": lambda: {1, 2},
    "env": lambda: dict(state),
    "aml_text": lambda: AMLResponse("plain text", 201, {"X-Custom": "a, b", "X-One": "1"}),
    "aml_json": lambda: AMLResponse({"a": [1, 2]}, 202, json_str=True),
    "aml_none": lambda: AMLResponse(None, 200),
    "aml_500": lambda: AMLResponse("broken", 503),
    "aml_500_flag": lambda: AMLResponse("broken", 500, run_function_failed=False),
    "aml_400": lambda: AMLResponse("bad", 400, run_function_failed=True),
    "aml_ct": lambda: AMLResponse("a,b\n1,2\n", 200, {"Content-Type": "text/csv"}),
    "aml_ct_lower": lambda: AMLResponse("a,b\n1,2\n", 200, {"content-type": "text/csv"}),
    "aml_json_ct": lambda: AMLResponse({"a": 1}, 200, {"Content-Type": "application/problem+json"}, json_str=True),
    "aml_bytes": lambda: AMLResponse(b"\x00\x01\xff", 200, {"Content-Type": "application/octet-stream"}),
    "aml_dict_plain": lambda: AMLResponse({"k1": 1, "k2": 2}, 200),
    "aml_list_str": lambda: AMLResponse(["a", "b", b"c"], 200),
    "aml_list_int": lambda: AMLResponse([1, 2], 200),
    "aml_empty": lambda: AMLResponse("", 204),
    "aml_header_int": lambda: AMLResponse("x", 200, {"X-Num": 5}),
}


def run(raw_data):
    if raw_data.startswith("kind:"):
        kind = raw_data[len("kind:") :]
        if kind == "raise":
            raise ValueError("scoring went wrong")
        if kind == "exit":
            raise SystemExit(2)
        return RETURNS[kind]()
    return {"received": raw_data}
