"""@rawhttp with request_headers too."""

from azureml.contrib.services.aml_request import rawhttp


def init():
    pass


@rawhttp
def run(request, request_headers):
    return {"method": request.method, "x_custom": request_headers.get("X-Custom")}
