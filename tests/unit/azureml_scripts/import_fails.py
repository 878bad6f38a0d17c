import not_a_real_module_xyz  # noqa: F401


def init():
    pass


def run(data):
    return data
