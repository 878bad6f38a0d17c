"""run() that declares request_headers: gets the request's headers as a dict."""


def init():
    pass


def run(data, request_headers):
    return {"data": data, "headers": request_headers}
