"""@rawhttp run(): gets the request object and answers with AMLResponse or a plain value."""

import json

from azureml.contrib.services.aml_request import AMLRequest, rawhttp
from azureml.contrib.services.aml_response import AMLResponse


def init():
    pass


@rawhttp
def run(request: AMLRequest):
    mode = request.args.get("mode", "echo")
    if mode == "plain":
        return {"method": request.method}
    if mode == "json":
        return request.get_json()
    if mode == "form":
        return {"form": dict(request.form), "files": {k: f.read().decode() for k, f in request.files.items()}}
    if mode == "form_then_data":
        return {"form": dict(request.form), "data": request.get_data(as_text=True)}
    if mode == "data_then_form":
        return {"data": request.get_data(as_text=True), "form": dict(request.form)}
    if mode == "data_prop":
        return {"data": request.data.decode("utf-8", "replace")}
    if mode == "values":
        return {"values": request.values.to_dict(flat=False)}
    if mode == "cookies":
        return {"cookies": request.cookies}
    if mode == "status_str":
        return AMLResponse("created", "201 CREATED")
    if mode == "image":
        return AMLResponse(request.get_data(), 200, {"Content-Type": "image/png"})
    body = {
        "method": request.method,
        "path": request.path,
        "full_path": request.full_path,
        "args": {k: request.args.getlist(k) for k in request.args},
        "data": request.get_data(as_text=True),
        "content_type": request.content_type,
        "mimetype": request.mimetype,
        "is_json": request.is_json,
        "x_custom": request.headers.get("X-Custom"),
    }
    return AMLResponse(json.dumps(body), 200, {"Content-Type": "application/json"})
