import time


def init():
    pass


def run(data):
    time.sleep(float(data))
    return "done"
