"""A slow, deterministic entry script for the operator's fault tests.

run() returns one row per file, "<name> <bytes>", after sleeping a little so a test has time to
delete pods and kill processes while mini-batches are in flight.
"""
import os
import time


def init():
    pass


def run(mini_batch):
    time.sleep(0.15)
    rows = []
    for path in mini_batch:
        with open(path, "rb") as f:
            rows.append(f"{os.path.basename(path)} {len(f.read())}")
    return rows
