"""Scores text documents against a word lexicon (a side input).

run() gets a list of file paths and returns one line per document: "<name> <words> <score>".
Documents whose name contains "flaky" fail on their first attempt (a stand-in for a transient
error such as a network blip), so the run shows parallelrun retrying a mini-batch.
"""
import argparse
import os

from parallelrun import EntryScript

LEXICON = {}
MIN_WORDS = 0


def init():
    global MIN_WORDS
    parser = argparse.ArgumentParser()
    parser.add_argument("--lexicon", required=True)
    parser.add_argument("--min-words", type=int, default=0)
    args, _ = parser.parse_known_args()
    MIN_WORDS = args.min_words
    with open(args.lexicon, encoding="utf-8") as f:
        for line in f:
            word, score = line.split("\t")
            LEXICON[word] = float(score)
    EntryScript().logger.info("loaded %d lexicon words on %s/%s", len(LEXICON),
                              EntryScript().node_id, EntryScript().agent_name)


def _fail_once(path):
    # The marker lives in the job's output folder, which every node shares.
    marker = os.path.join(EntryScript().output_dir, ".flaky-" + os.path.basename(path))
    if not os.path.exists(marker):
        open(marker, "w").close()
        raise RuntimeError(f"transient failure while reading {os.path.basename(path)}")


def run(mini_batch):
    results = []
    for path in mini_batch:
        if "flaky" in os.path.basename(path):
            _fail_once(path)
        with open(path, encoding="utf-8") as f:
            words = f.read().lower().split()
        if len(words) < MIN_WORDS:
            EntryScript().logger.warning("%s has only %d words; skipped", path, len(words))
            continue  # a missing result counts as one failed item
        score = sum(LEXICON.get(w.strip(".,;:!?"), 0.0) for w in words) / len(words)
        results.append(f"{os.path.basename(path)} {len(words)} {score:.4f}")
    return results
