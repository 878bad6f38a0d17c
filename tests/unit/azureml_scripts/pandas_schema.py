"""run() decorated with PandasParameterType (records orient)."""

import pandas as pd
from inference_schema.parameter_types.pandas_parameter_type import PandasParameterType
from inference_schema.parameter_types.standard_py_parameter_type import StandardPythonParameterType
from inference_schema.schema_decorators import input_schema, output_schema

SAMPLE = pd.DataFrame({"temp": [21.5, 22.0], "count": [1, 2], "site": ["a", "b"]})


def init():
    pass


@input_schema("data", PandasParameterType(SAMPLE))
@output_schema(StandardPythonParameterType([1.0]))
def run(data):
    assert isinstance(data, pd.DataFrame)
    return {"columns": list(data.columns), "dtypes": [str(t) for t in data.dtypes], "sum": float(data["temp"].sum())}
