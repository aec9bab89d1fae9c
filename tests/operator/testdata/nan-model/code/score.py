# The failing job of docs/why-did-my-job-fail.md and tests/operator/test_why_failed_e2e.py: a
# "model" whose every prediction is NaN, which run() refuses to write.
import math
import time


def init():
    print("model loaded", flush=True)


def predict(text):
    score = float("nan")  # what a broken model returns
    if math.isnan(score):
        raise ValueError("model returned NaN; check the model file and the input encoding")
    return score


def run(mini_batch):
    print("scoring %d file(s)" % len(mini_batch), flush=True)
    time.sleep(1)  # long enough for the status to show the errors while the job runs
    return ["%s %f" % (path, predict(open(path).read())) for path in mini_batch]
