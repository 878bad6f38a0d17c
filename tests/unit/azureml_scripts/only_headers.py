def init():
    pass


def run(request_headers):
    return request_headers
