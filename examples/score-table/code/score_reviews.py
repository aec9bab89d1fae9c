"""Labels product reviews. run() gets a pandas DataFrame (one row per CSV row, the header applied)
and returns a DataFrame; parallelrun writes it space-separated into the output file, with the
header once at the top (appendRowHeader)."""
import argparse

from parallelrun import EntryScript

THRESHOLD = 3


def init():
    global THRESHOLD
    parser = argparse.ArgumentParser()
    parser.add_argument("--positive-above", type=int, default=3)
    args, _ = parser.parse_known_args()
    THRESHOLD = args.positive_above


def run(mini_batch):
    EntryScript().logger.debug("scoring %d reviews", len(mini_batch))
    out = mini_batch[["review_id", "rating"]].copy()
    out["label"] = ["positive" if r > THRESHOLD else "negative" for r in mini_batch["rating"]]
    out["lines"] = [str(t).count("\n") + 1 for t in mini_batch["text"]]
    return out
