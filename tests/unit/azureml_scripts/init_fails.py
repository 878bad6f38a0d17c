def init():
    raise FileNotFoundError("model.pkl is missing")


def run(data):
    return data
