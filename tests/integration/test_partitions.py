"""Partition keys (issue 16): `spec.partitionKeys` with a file input's `partitionFormat` and with
tabular columns, run by the real `parallelrun` binary on entry scripts written in the style of
Azure ML's partition and many-models samples, each compared with a plain Python loop that calls
the same script's init() and run() over mini-batches built here independently (glob + regular
expressions for files, pandas groupby for tables), not with the product's code.

The manifests and data builders are shared with tests/operator (the same jobs on the test
cluster)."""
import json
import os
import re
import signal
import subprocess
import types
import unittest

import pandas as pd

from jobkit import BIN, JobTestCase, manifest, read_text, wait_for
from test_aml import as_rows, load_script

# ---- file partitions: one result per (user, genres), across season folders --------------------

SONG_SCRIPT = """
import argparse
import json
import os

_unit = None


def init():
    global _unit
    parser = argparse.ArgumentParser()
    parser.add_argument("--unit", type=str, default="beats")
    args, _ = parser.parse_known_args()
    _unit = args.unit


def run(mini_batch, mini_batch_context):
    # One mini-batch holds every song of one (user, genres) pair, whatever the season folder.
    total = 0
    seasons = []
    for path in mini_batch:
        with open(path) as f:
            total += sum(int(x) for x in f.read().split())
        seasons.append(os.path.basename(os.path.dirname(path)))
    key = mini_batch_context.partition_key_value
    return ["%s %d %s %s %d %s=%d" % (mini_batch_context.dataset,
                                      mini_batch_context.minibatch_index, json.dumps(key),
                                      "+".join(seasons), len(mini_batch), _unit, total)]
"""

SONG_FORMAT = "{user}/{season}/{genres}.wav"
SONG_RE = re.compile(r"^(?P<user>[^/]+)/(?P<season>[^/]+)/(?P<genres>[^/]+)\.wav$")


def write_songs(write):
    """Songs of three users over two seasons, plus a file the format does not match."""
    users = ["ann", "bob", "cyd"]
    genres = ["rock", "jazz", "folk"]
    n = 0
    for u, user in enumerate(users):
        for season in ["summer", "fall"]:
            for g, genre in enumerate(genres):
                if (u + g + len(season)) % 4 == 0:
                    continue  # not every user has every genre every season
                n += 1
                write(os.path.join("data", user, season, genre + ".wav"),
                      " ".join(str(n * k) for k in range(1, 4)) + "\n")
    write(os.path.join("data", "notes.txt"), "not a song\n")


def song_manifest(name="partition-songs"):
    return manifest(name=name, entryScript="songs.py",
                    inputs=[{"name": "songs", "type": "file", "source": {"path": "data/"},
                             "partitionFormat": SONG_FORMAT}],
                    partitionKeys=["user", "genres"], miniBatchSize=None,
                    arguments=["--unit", "notes"])


def reference_song_batches(data_dir):
    """[(partition_key_value, [paths])] in order of first appearance, walking depth first in
    byte order (the files sorted by their path components)."""
    rels = []
    for root, _dirs, files in os.walk(data_dir):
        for name in files:
            rels.append(os.path.relpath(os.path.join(root, name), data_dir))
    rels.sort(key=lambda r: [c.encode() for c in r.split("/")])
    groups = {}
    for rel in rels:
        m = SONG_RE.match(rel)
        if m:
            key = (m["user"], m["genres"])
            groups.setdefault(key, []).append(os.path.join(data_dir, rel))
    return [({"user": u, "genres": g}, paths) for (u, g), paths in groups.items()]


# ---- tabular partitions: one model per (Store, Brand), across CSV files --------------------------

TRAIN_SCRIPT = """
import argparse
import json
import os

import numpy as np

_model_dir = None


def init():
    global _model_dir
    parser = argparse.ArgumentParser()
    parser.add_argument("--model_dir", type=str, required=True)
    args, _ = parser.parse_known_args()
    _model_dir = args.model_dir
    os.makedirs(_model_dir, exist_ok=True)


def run(mini_batch, mini_batch_context):
    # Many-models style: fit one tiny model on this (Store, Brand)'s rows, save it, return [].
    key = mini_batch_context.partition_key_value
    slope, intercept = np.polyfit(mini_batch["week"].astype(float),
                                  mini_batch["sales"].astype(float), 1)
    name = "model_%s_%s.json" % (key["Store"], key["Brand"].replace(" ", "-"))
    model = {"key": key, "key_types": {k: type(v).__name__ for k, v in key.items()},
             "rows": len(mini_batch), "dtypes": {c: str(t) for c, t in mini_batch.dtypes.items()},
             "slope": round(float(slope), 9), "intercept": round(float(intercept), 9),
             "data": mini_batch.to_csv(index=False)}
    with open(os.path.join(_model_dir, name), "w") as f:
        json.dump(model, f, sort_keys=True, indent=1)
    return []
"""

STORES = [1, 2, 5]
BRANDS = ["tropicana", "dominicks", "minute maid"]


def write_sales(write):
    """Three CSV files, each holding rows of several (Store, Brand) pairs, interleaved."""
    for f in range(3):
        lines = ["week,Store,Brand,sales,price"]
        for week in range(f * 8, f * 8 + 8):
            for s, store in enumerate(STORES):
                for b, brand in enumerate(BRANDS):
                    if (s + b + f) % 3 == 2:
                        continue  # not every pair in every file
                    sales = 100 + 7 * s + 3 * b + week * (1 + b) + (week * 37 + s) % 11
                    brand_text = '"%s"' % brand if " " in brand else brand
                    lines.append("%d,%d,%s,%d.5,%.2f" % (week, store, brand_text, sales,
                                                         1.5 + b * 0.25))
        write(os.path.join("sales", "part-%02d.csv" % f), "\n".join(lines) + "\n")


def sales_manifest(name="partition-sales"):
    return manifest(name=name, entryScript="train.py",
                    inputs=[{"name": "sales", "type": "tabular", "source": {"path": "sales/"}}],
                    partitionKeys=["Store", "Brand"], miniBatchSize=None, errorThreshold=-1,
                    arguments=["--model_dir", "$(output)/models"])


def reference_sales_batches(sales_dir):
    """[(partition_key_value, DataFrame)] by pandas groupby over all files in name order."""
    files = sorted(os.listdir(sales_dir))
    frame = pd.concat([pd.read_csv(os.path.join(sales_dir, f)) for f in files],
                      ignore_index=True)
    out = []
    for (store, brand), rows in frame.groupby(["Store", "Brand"], sort=False):
        out.append(({"Store": int(store), "Brand": brand}, rows.reset_index(drop=True)))
    return out


def reference_models(script, batches, dataset, model_dir):
    module = load_script(script, ["--model_dir", model_dir])
    for index, (key, batch) in enumerate(batches):
        context = types.SimpleNamespace(partition_key_value=key, dataset=dataset,
                                        minibatch_index=index)
        assert module.run(batch, context) == []


def reference_song_rows(script, batches):
    module = load_script(script, ["--unit", "notes"])
    rows = []
    for index, (key, paths) in enumerate(batches):
        context = types.SimpleNamespace(partition_key_value=key, dataset="songs",
                                        minibatch_index=index)
        rows.extend(as_rows(module.run(paths, context)))
    return rows


def read_models(folder):
    out = {}
    for name in sorted(os.listdir(folder)):
        with open(os.path.join(folder, name)) as f:
            out[name] = json.load(f)
    return out


class PartitionKeysTest(JobTestCase):
    def test_file_partitions_gather_files_across_folders_like_a_plain_loop(self):
        write_songs(self.job.write)
        self.job.write("code/songs.py", SONG_SCRIPT)
        self.job.write_manifest(song_manifest())
        proc = self.job.run()
        self.assertExit(proc, 0)
        self.assertIn("notes.txt", proc.stderr)  # the file the format does not match, named
        batches = reference_song_batches(os.path.join(self.tmp, "data"))
        expected = reference_song_rows(os.path.join(self.tmp, "code", "songs.py"), batches)
        self.assertEqual(len(expected), 9)
        self.assertEqual(self.job.output_lines(), expected)
        # Keys in partitionKeys order, one mini-batch holding both seasons.
        self.assertTrue(expected[0].startswith('songs 0 {"user": "ann", "genres": '), expected)
        self.assertTrue(any("fall+summer 2" in line for line in expected), expected)

    def test_tabular_partitions_train_one_model_per_store_and_brand_like_groupby(self):
        write_sales(self.job.write)
        self.job.write("code/train.py", TRAIN_SCRIPT)
        self.job.write_manifest(sales_manifest())
        proc = self.job.run()
        self.assertExit(proc, 0)
        self.assertTrue(self.job.result().startswith("Succeeded"), self.job.result())
        self.assertEqual(self.job.output_lines(), [])
        batches = reference_sales_batches(os.path.join(self.tmp, "sales"))
        self.assertEqual(len(batches), 9)
        ref_dir = os.path.join(self.tmp, "reference")
        reference_models(os.path.join(self.tmp, "code", "train.py"), batches, "sales", ref_dir)
        got = read_models(os.path.join(self.job.output, "models"))
        want = read_models(ref_dir)
        self.assertEqual(sorted(got), sorted(want))
        for name in want:
            self.assertEqual(got[name], want[name], name)
        # Typed key values (Store is an int, as in the DataFrame), rows from every file.
        one = want["model_1_minute-maid.json"]
        self.assertEqual(one["key_types"], {"Brand": "str", "Store": "int"})
        self.assertGreater(one["rows"], 8)
        self.assertEqual(len(self.job.report_rows()), 9)  # one attempt per partition

    def test_missing_partition_column_fails_naming_the_file_and_column(self):
        self.job.write("sales/a.csv", "Store,Brand,week,sales\n1,x,1,2\n")
        self.job.write("sales/b.csv", "Store,week,sales\n1,1,2\n")
        self.job.write("code/train.py", TRAIN_SCRIPT)
        self.job.write_manifest(sales_manifest())
        proc = self.job.run()
        self.assertNotEqual(proc.returncode, 0)
        self.assertIn('b.csv: has no column "Brand"', proc.stderr + proc.stdout)



# Partition 0 holds the only worker until the gate opens; by then the plan is complete.
GATED_SONGS = """
import os, time

GATE = {gate!r}


def run(mini_batch, mini_batch_context):
    if mini_batch_context.minibatch_index == 0:
        deadline = time.time() + 240
        while not os.path.exists(GATE) and time.time() < deadline:
            time.sleep(0.02)
    return ["%d %s" % (mini_batch_context.minibatch_index, os.path.basename(p))
            for p in mini_batch]
"""


class PartitionFingerprintTest(JobTestCase):
    def test_a_partition_file_changed_after_planning_fails_its_mini_batch_naming_it(self):
        write_songs(self.job.write)
        gate = os.path.join(self.tmp, "gate")
        self.job.write("code/songs.py", GATED_SONGS.format(gate=gate))
        m = song_manifest()
        m["spec"].update(processCountPerNode=1, runMaxTry=1, allowedFailedPercent=100)
        self.job.write_manifest(m)
        run = subprocess.Popen([BIN, "run", os.path.join(self.tmp, "job.yaml")], cwd=self.tmp,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               start_new_session=True)
        self.addCleanup(lambda: run.poll() is None and os.killpg(run.pid, signal.SIGKILL))
        plan = os.path.join(self.job.output, ".parallelrun", "plan")
        wait_for("the complete plan", lambda: os.path.exists(plan) and
                 read_text(plan).endswith("END\n"), 120)
        batches = reference_song_batches(os.path.join(self.tmp, "data"))
        changed = batches[1][1][-1]  # the last file of the second partition
        with open(changed, "a") as f:
            f.write("7\n")
        with open(gate, "w"):
            pass
        out, err = run.communicate(timeout=240)
        self.assertEqual(run.returncode, 0, err)  # allowedFailedPercent 100
        errors = read_text(os.path.join(self.job.logs, "user", "error.txt"))
        self.assertIn("input file(s) changed since the job was planned: " + changed, errors)
        failed = [r for r in self.job.report_rows() if r["accepted"] == "1"
                  and r["status"] != "RUN_DONE"]
        self.assertEqual([int(r["mini_batch_id"]) for r in failed], [1])
        self.assertNotIn("1 ", [line[:2] for line in self.job.output_lines()])
        self.assertEqual(len(self.job.output_lines()),
                         sum(len(paths) for _, paths in batches) - len(batches[1][1]))


if __name__ == "__main__":
    unittest.main()
