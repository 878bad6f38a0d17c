"""init() finds its model the Azure ML SDK v1 way."""

from azureml.core.model import Model

state = {}


def init():
    state["path"] = Model.get_model_path("mymodel")


def run(data):
    with open(state["path"]) as f:
        return {"path": state["path"], "content": f.read()}
