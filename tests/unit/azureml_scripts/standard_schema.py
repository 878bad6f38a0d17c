"""run() decorated with StandardPythonParameterType (a nested dict) and request_headers."""

from inference_schema.parameter_types.standard_py_parameter_type import StandardPythonParameterType
from inference_schema.schema_decorators import input_schema, output_schema


def init():
    pass


@input_schema("inputs", StandardPythonParameterType({"name": "x", "count": 2, "weights": [0.5, 1.5]}))
@input_schema("flag", StandardPythonParameterType(True))
@output_schema(StandardPythonParameterType({"total": 3.0}))
def run(inputs, flag, request_headers):
    return {
        "inputs": inputs,
        "flag": flag,
        "has_headers": isinstance(request_headers, dict),
        "total": sum(inputs.get("weights", [])) * inputs.get("count", 0),
    }
