"""A mixed-type list sample: swagger 2 cannot describe it, so only 3 and 3.1 are served."""

from inference_schema.parameter_types.standard_py_parameter_type import StandardPythonParameterType
from inference_schema.schema_decorators import input_schema


def init():
    pass


@input_schema("row", StandardPythonParameterType([1, "a", 2.5]))
def run(row):
    return row
