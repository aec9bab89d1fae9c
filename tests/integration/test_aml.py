"""Azure ML entry scripts run unchanged (issue 16): real `parallelrun run` processes on entry
scripts written in the style of Azure ML's parallel-job samples, each compared row by row with a
plain Python loop that calls the same script's init() and run() over the same mini-batches."""
import importlib.util
import os
import shutil
import sys
import types
import unittest

from jobkit import JobTestCase, manifest

# A file-input script in the two-parameter form of Azure ML's partition samples.
CONTEXT_SCRIPT = """
import argparse
import json
import logging
import os

_label = None


def init():
    global _label
    parser = argparse.ArgumentParser()
    parser.add_argument("--label", type=str, default="words")
    args, _ = parser.parse_known_args()
    _label = args.label
    logging.info("init() done, label %s", _label)


def run(mini_batch, mini_batch_context):
    logging.info("mini-batch %s of %s", mini_batch_context.minibatch_index,
                 mini_batch_context.dataset)
    results = []
    for file_path in mini_batch:
        with open(file_path) as f:
            count = len(f.read().split())
        folder = os.path.basename(os.path.dirname(file_path))
        results.append("%s %d %s %s/%s %s=%d" % (
            mini_batch_context.dataset, mini_batch_context.minibatch_index,
            json.dumps(mini_batch_context.partition_key_value, sort_keys=True),
            folder, os.path.basename(file_path), _label, count))
    return results
"""


def load_script(path, argv):
    """Imports an entry script by hand, as a user debugging it would."""
    name = "aml_reference_%d" % id(path)
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    old_argv, old_path = sys.argv, list(sys.path)
    sys.argv = [path] + list(argv)
    sys.path.insert(0, os.path.dirname(path))
    try:
        spec.loader.exec_module(module)
        if hasattr(module, "init"):
            module.init()
    finally:
        sys.argv, sys.path[:] = old_argv, old_path
    return module


def as_rows(result):
    """The lines the host writes for one run() result (append_row)."""
    if hasattr(result, "to_csv"):
        return result.to_csv(sep=" ", index=False, header=False).splitlines()
    out = []
    for element in result:
        out.extend(str(element).split("\n"))
    return out


def reference_loop(script, argv, batches, dataset):
    """A plain Python loop over the mini-batches: what Azure ML would write."""
    module = load_script(script, argv)
    rows = []
    for index, batch in enumerate(batches):
        context = types.SimpleNamespace(partition_key_value={}, dataset=dataset,
                                        minibatch_index=index)
        rows.extend(as_rows(module.run(batch, context)))
    return rows


class MiniBatchContextTest(JobTestCase):
    def test_two_parameter_run_gets_the_context_and_matches_a_plain_loop(self):
        files = []
        for folder, n in [("north", 4), ("south", 3), ("west", 5)]:
            for i in range(n):
                rel = os.path.join("data", folder, "part%02d.txt" % i)
                self.job.write(rel, " ".join(["w"] * (i + 1 + len(folder))) + "\n")
                files.append(os.path.join(self.tmp, rel))
        self.job.write("code/score.py", CONTEXT_SCRIPT)
        self.job.write_manifest(manifest(miniBatchSize=4, nodeCount=2, processCountPerNode=2,
                                         arguments=["--label", "tokens"]))
        proc = self.job.run()
        self.assertExit(proc, 0)
        batches = [files[i:i + 4] for i in range(0, len(files), 4)]
        expected = reference_loop(os.path.join(self.tmp, "code", "score.py"),
                                  ["--label", "tokens"], batches, "docs")
        self.assertEqual(self.job.output_lines(), expected)
        self.assertEqual(len(expected), 12)
        self.assertTrue(expected[-1].startswith("docs 2 {} west/part04.txt tokens="), expected)

    def test_uncallable_signatures_are_init_failed_naming_the_supported_ones(self):
        cases = [
            ("def run(mini_batch, mini_batch_context, model):\n    return mini_batch\n",
             "run(mini_batch) or run(mini_batch, mini_batch_context)"),
            ("def run():\n    return []\n",
             "run(mini_batch) or run(mini_batch, mini_batch_context)"),
            ("def init(model_path):\n    pass\ndef run(mini_batch):\n    return mini_batch\n",
             "the supported signature is init()"),
        ]
        self.make_files(6)
        for script, wanted in cases:
            with self.subTest(script=script):
                self.job.write("code/score.py", script)
                self.job.write_manifest(manifest(processCountPerNode=1, runMaxTry=3))
                shutil.rmtree(self.job.output, ignore_errors=True)
                proc = self.job.run()
                self.assertExit(proc, 42)
                result = self.job.result()
                self.assertFirstLine(result, "Failed: InitFailed")
                self.assertIn(wanted, result)
                # Never tried per mini-batch: no attempt reached run(); and the node gave up
                # after the first start instead of 3 x processCountPerNode of them.
                self.assertEqual(self.job.report_rows(), [])
                errors = self.job.read("output/logs/user/error.txt")
                self.assertEqual(errors.count("INIT_FAILED"), 1, errors)


# A training script in the style of Azure ML's many-models sample: one model per file, written to
# the output folder; run() returns [] because its outputs are the model files.
TRAIN_SCRIPT = """
import argparse
import json
import os

import pandas as pd

model_dir = None


def init():
    global model_dir
    parser = argparse.ArgumentParser()
    parser.add_argument("--model_output", type=str, required=True)
    args, _ = parser.parse_known_args()
    model_dir = args.model_output
    os.makedirs(model_dir, exist_ok=True)


def run(mini_batch):
    for csv_path in mini_batch:
        data = pd.read_csv(csv_path)
        store = os.path.splitext(os.path.basename(csv_path))[0]
        slope = float(data["sales"].diff().mean())
        model = {"store": store, "mean": float(data["sales"].mean()), "slope": slope}
        with open(os.path.join(model_dir, store + ".json"), "w") as f:
            json.dump(model, f, sort_keys=True)
    return []
"""


class SuccessRuleTest(JobTestCase):
    def write_stores(self, n):
        files = []
        for i in range(n):
            rows = "\n".join("%d,%d" % (week, 100 + i * week) for week in range(6))
            rel = "data/store%02d.csv" % i
            self.job.write(rel, "week,sales\n" + rows + "\n")
            files.append(os.path.join(self.tmp, rel))
        self.job.write("code/train.py", TRAIN_SCRIPT)
        return files

    def test_training_job_returning_nothing_succeeds_under_error_threshold_minus_one(self):
        files = self.write_stores(7)
        self.job.write_manifest(manifest(entryScript="train.py", miniBatchSize=2,
                                         errorThreshold=-1,
                                         arguments=["--model_output", "$(output)/models"]))
        proc = self.job.run()
        self.assertExit(proc, 0)
        self.assertFirstLine(self.job.result(), "Succeeded")
        self.assertEqual(self.job.output_lines(), [])
        # The same models as a plain loop over the same mini-batches.
        ref_dir = os.path.join(self.tmp, "reference")
        module = load_script(os.path.join(self.tmp, "code", "train.py"),
                             ["--model_output", ref_dir])
        for i in range(0, len(files), 2):
            self.assertEqual(module.run(files[i:i + 2]), [])
        names = sorted(os.listdir(ref_dir))
        self.assertEqual(len(names), 7)
        self.assertEqual(sorted(os.listdir(os.path.join(self.job.output, "models"))), names)
        for name in names:
            self.assertEqual(self.job.read(os.path.join("output", "models", name)),
                             self.job.read(os.path.join("reference", name)), name)

    def test_no_item_succeeded_fails_when_error_threshold_is_set(self):
        self.write_stores(3)
        self.job.write_manifest(manifest(entryScript="train.py", errorThreshold=1000,
                                         arguments=["--model_output", "$(output)/models"]))
        proc = self.job.run()
        self.assertExit(proc, 42)
        self.assertFirstLine(self.job.result(), "Failed: NoSucceededItems")
        self.assertIn("errorThreshold is not -1", self.job.result())


ENV_SCRIPT = """
import os

model_name = None


def init():
    global model_name
    model_name = os.environ["MODEL_NAME"]


def run(mini_batch):
    return ["%s %s %s %s" % (os.path.basename(p), model_name, os.environ["MODEL_PATH"],
                             os.environ.get("API_TOKEN", "-")) for p in mini_batch]
"""


class LocalEnvTest(JobTestCase):
    def test_spec_env_reaches_the_workers_in_local_mode(self):
        names = self.make_files(4)
        self.job.write("code/score.py", ENV_SCRIPT)
        self.job.write_manifest(manifest(env=[
            {"name": "MODEL_NAME", "value": "iris"},
            {"name": "MODEL_PATH", "value": "/models/$(MODEL_NAME)/1"},
            {"name": "API_TOKEN", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}},
        ]))
        proc = self.job.run()
        self.assertExit(proc, 0)
        self.assertEqual(self.job.output_lines(), [n + " iris /models/iris/1 -" for n in names])
        self.assertNotIn("ignored in local mode", proc.stderr)
        self.assertIn("spec.env API_TOKEN uses valueFrom", proc.stderr)

    def test_malformed_env_entry_is_refused_naming_it(self):
        self.make_files(1)
        self.job.write("code/score.py", ENV_SCRIPT)
        self.job.write_manifest(manifest(env=[{"name": "MODEL_NAME", "value": 3}]))
        proc = self.job.run()
        self.assertExit(proc, 1)
        self.assertIn("spec.env[0].value: expected a string", proc.stderr)


class RerunTest(JobTestCase):
    def test_rerunning_a_finished_job_prints_its_result_and_the_way_on(self):
        names = self.make_files(3)
        self.job.write("code/score.py", "def init(model_path):\n    pass\n"
                                        "def run(mini_batch):\n    return mini_batch\n")
        self.job.write_manifest(manifest(processCountPerNode=1))
        first = self.job.run()
        self.assertExit(first, 42)
        self.assertNotIn("already finished", first.stderr)
        # The user fixes the script and runs the same manifest again.
        self.job.write("code/score.py", "import os\ndef init():\n    pass\n"
                                        "def run(mini_batch):\n"
                                        "    return [os.path.basename(p) for p in mini_batch]\n")
        again = self.job.run()
        self.assertExit(again, 42)
        self.assertFirstLine(again.stdout, "Failed: InitFailed")
        # run's own hint, once (the coordinator's progress line says "already finished" too, and
        # shows when run's first progress poll comes before the coordinator's end).
        hint = [line for line in again.stderr.splitlines()
                if line.startswith("parallelrun run:") and "already finished" in line]
        self.assertEqual(len(hint), 1, again.stderr)
        self.assertIn("--restart", hint[0])
        self.assertIn("retryFrom: output", hint[0])
        restarted = self.job.run("--restart")
        self.assertExit(restarted, 0)
        self.assertNotIn("already finished", restarted.stderr)
        self.assertEqual(self.job.output_lines(), names)


# A tabular script that keeps every mini-batch DataFrame it gets, named by its index.
KEEP_FRAMES_SCRIPT = """
import os

from parallelrun import EntryScript


def init():
    global frames_dir
    frames_dir = os.path.join(EntryScript().output_dir, "frames")
    os.makedirs(frames_dir, exist_ok=True)


def run(mini_batch, mini_batch_context):
    mini_batch.to_pickle(os.path.join(frames_dir, "%06d.pkl" % mini_batch_context.minibatch_index))
    return ["%d" % i for i in range(len(mini_batch))]
"""

TABLES = {
    # quoted separators, doubled quotes and a newline inside quotes
    "a_quoted.csv": 'id,text,score\n1,"a, b",0.5\n2,"say ""hi""",1.5\n3,"two\nlines",2\n'
                    + "".join('%d,"row %d, quoted",%d\n' % (i, i, i) for i in range(4, 40)),
    # old-Mac line endings only
    "b_cr_only.csv": "id,name,qty\r" + "".join("%d,item%d,%d\r" % (i, i, i * 3)
                                                for i in range(1, 60)),
    # LF, CRLF and CR mixed, a quoted CR, no final newline
    "c_mixed_endings.csv": 'k,v\r\n1,x\n2,"y\rz"\r3,w\r\n4,last',
    # column types that a part of the file alone would infer differently
    "d_mixed_types.csv": "code,amount,flag,note\n"
                         + "".join("%d,%d,True,n%d\n" % (i, i, i) for i in range(1, 50))
                         + "A7,3.5,False,\n" + "".join("%d,%d,False,m\n" % (i, i)
                                                          for i in range(50, 70)),
    # header only: an empty table, no mini-batch
    "e_header_only.csv": "x,y\n",
    # a value only uint64 holds: the whole column is uint64; with a negative one, strings
    "f_unsigned.csv": "n,m\n" + "".join("%d,%d\n" % (i, -i) for i in range(40))
                      + "18446744073709551615,-1\n" + "".join("%d,%d\n" % (i, i) for i in range(9)),
}


class TabularSchemaTest(JobTestCase):
    def test_mini_batches_concatenate_to_read_csv_of_each_whole_file_dtypes_included(self):
        import pandas as pd
        for name, text in TABLES.items():
            self.job.write(os.path.join("data", name), text.encode(), mode="wb")
        self.job.write("code/score.py", KEEP_FRAMES_SCRIPT)
        self.job.write_manifest(manifest(
            inputs=[{"name": "tables", "type": "tabular", "source": {"path": "data/"}}],
            miniBatchSize=64, processCountPerNode=2, nodeCount=2))
        proc = self.job.run()
        self.assertExit(proc, 0)
        frames_dir = os.path.join(self.job.output, "frames")
        frames = [pd.read_pickle(os.path.join(frames_dir, n)) for n in sorted(os.listdir(frames_dir))]
        self.assertGreater(len(frames), len(TABLES))  # several mini-batches per file
        for name in sorted(TABLES):
            whole = pd.read_csv(os.path.join(self.tmp, "data", name))
            got = []
            while sum(len(f) for f in got) < len(whole):
                got.append(frames.pop(0))
            if not got:
                self.assertEqual(len(whole), 0, name)
                continue
            joined = pd.concat(got, ignore_index=True)
            pd.testing.assert_frame_equal(joined, whole, check_dtype=True, obj=name)
        self.assertEqual(frames, [])

    def test_a_header_that_swallows_the_file_is_an_error_naming_it(self):
        self.job.write("data/ok.csv", "a,b\n1,2\n")
        self.job.write("data/z_broken.csv", 'a,"b\n1,2\n3,4\n')
        self.job.write("code/score.py", KEEP_FRAMES_SCRIPT)
        self.job.write_manifest(manifest(
            inputs=[{"name": "tables", "type": "tabular", "source": {"path": "data/"}}]))
        proc = self.job.run()
        self.assertExit(proc, 1)
        self.assertFirstLine(self.job.result(), "Failed: InvalidInput")
        self.assertIn(os.path.join(self.tmp, "data", "z_broken.csv"), self.job.result())
        self.assertIn("never closed", self.job.result())

    def test_column_types_override_the_inferred_dtypes_for_every_file(self):
        import pandas as pd
        for f in range(2):
            rows = "".join("%03d,%d,2026-01-%02d,%s\n" % (f * 50 + i, i, i % 28 + 1, i % 3 == 0)
                           for i in range(1, 40))
            self.job.write("data/part%d.csv" % f, "id,qty,day,flag\n" + rows)
        self.job.write("code/score.py", KEEP_FRAMES_SCRIPT)
        types = {"id": "string", "qty": "float64", "day": "datetime", "flag": "bool"}
        self.job.write_manifest(manifest(
            inputs=[{"name": "tables", "type": "tabular", "source": {"path": "data/"},
                     "columnTypes": types}], miniBatchSize=200))
        proc = self.job.run()
        self.assertExit(proc, 0)
        frames_dir = os.path.join(self.job.output, "frames")
        frames = [pd.read_pickle(os.path.join(frames_dir, n)) for n in sorted(os.listdir(frames_dir))]
        self.assertGreater(len(frames), 2)
        expected = pd.concat([pd.read_csv(os.path.join(self.tmp, "data", "part%d.csv" % f),
                                          dtype={"id": object, "qty": "float64", "flag": bool},
                                          parse_dates=["day"]) for f in range(2)],
                             ignore_index=True)
        joined = pd.concat(frames, ignore_index=True)
        pd.testing.assert_frame_equal(joined, expected, check_dtype=True)
        self.assertEqual(joined["id"][0], "001")

    def test_column_types_naming_a_missing_column_fail_naming_it_and_the_file(self):
        self.job.write("data/t.csv", "a,b\n1,2\n")
        self.job.write("code/score.py", KEEP_FRAMES_SCRIPT)
        self.job.write_manifest(manifest(
            inputs=[{"name": "tables", "type": "tabular", "source": {"path": "data/"},
                     "columnTypes": {"c": "int64"}}], runMaxTry=1))
        proc = self.job.run()
        self.assertExit(proc, 42)
        errors = self.job.read("output/logs/user/error.txt")
        self.assertIn("columnTypes of input 'tables' names c, which " +
                      os.path.join(self.tmp, "data", "t.csv") + " does not have", errors)

    def test_column_types_on_a_file_input_are_refused(self):
        self.make_files(1)
        self.job.write("code/score.py", KEEP_FRAMES_SCRIPT)
        m = manifest()
        m["spec"]["inputs"][0]["columnTypes"] = {"a": "int64"}
        self.job.write_manifest(m)
        proc = self.job.run()
        self.assertExit(proc, 1)
        self.assertIn("spec.inputs[0].columnTypes", proc.stderr)


HOST_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "runtime",
                        "hosts", "python")

# Columns whose values give each dtype pandas can infer, alone and mixed (a second column keeps
# every row, empty values included).
COLUMN_CASES = [
    ["1", "2", "3", "4"], ["1", "-2", "3.5", "4"], ["1", "", "3", ""], ["", "", "", ""],
    ["True", "False", "true", "FALSE"], ["True", "", "False", "True"], ["True", "1", "0", "1"],
    ["1", "x", "2", "3"], ["", "x", "", ""], ["1", "18446744073709551615", "2", "3"],
    ["-1", "18446744073709551615", "2", "3"], ["1", "99999999999999999999999", "2", "3"],
    ["1.5", "18446744073709551615", "2", "3"], ["NA", "2", "null", "4"], ["1", "1e400", "2", "3"],
    ["2020-01-01", "2020-01-02", "x", "2020-01-04"],
]


class SchemaInferenceTest(unittest.TestCase):
    """parallelrun_schemas.infer_dtypes gives the dtypes of pandas.read_csv of the whole file,
    also for a file that pandas itself reads in several chunks (its low_memory mode infers each
    chunk's dtypes, then joins them), parsed in chunks of its own of any size."""

    def setUp(self):
        import tempfile
        sys.path.insert(0, HOST_DIR)
        self.addCleanup(sys.path.remove, HOST_DIR)
        self.tmp = tempfile.mkdtemp(prefix="parallelrun-schemas-")
        self.addCleanup(shutil.rmtree, self.tmp, True)

    def test_small_files_in_one_chunk(self):
        import itertools
        import pandas as pd
        import parallelrun_schemas
        cases = COLUMN_CASES + [a + b for a, b in itertools.product(COLUMN_CASES, repeat=2)]
        path = os.path.join(self.tmp, "t.csv")
        for values in cases:
            for order in (values, values[::-1]):
                with open(path, "w") as f:
                    f.write("a,keep\n" + "".join("%s,0\n" % v for v in order))
                got = parallelrun_schemas.infer_dtypes(pd, path, 0)
                self.assertEqual(got, (dict(pd.read_csv(path).dtypes), len(order)), order)

    def test_a_file_pandas_reads_in_chunks(self):
        import warnings
        import pandas as pd
        import parallelrun_schemas
        # 1,024 columns: pandas infers 512 rows at a time. Each column takes the values of one
        # case, either one value per pandas chunk (so chunks disagree) or cycling row by row.
        width, rows = 1024, 1536
        self.assertEqual(parallelrun_schemas.pandas_chunk_rows(width), 512)
        lines = [",".join("c%d" % j for j in range(width))]
        for r in range(rows):
            fields = []
            for j in range(width):
                case = COLUMN_CASES[(j // 2) % len(COLUMN_CASES)]
                k = (r // 512 + j // 32) if j % 2 == 0 else r
                fields.append(case[k % len(case)])
            lines.append(",".join(fields))
        path = os.path.join(self.tmp, "wide.csv")
        with open(path, "w") as f:
            f.write("\n".join(lines) + "\n")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # pandas' DtypeWarning for the mixed columns
            want = dict(pd.read_csv(path).dtypes)
        kinds = {t.kind for t in want.values()}
        self.assertTrue({"i", "u", "f", "b", "O"} <= kinds, kinds)
        for chunk_bytes in (1, 100000, 1 << 30):  # one, a few and all of pandas' chunks at a time
            got, n = parallelrun_schemas.infer_dtypes(pd, path, 0, chunk_bytes)
            self.assertEqual(n, rows)
            diff = {c: (got[c], want[c]) for c in want if got.get(c) != want[c]}
            self.assertEqual(diff, {}, chunk_bytes)


    def test_mini_batches_of_a_file_pandas_reads_in_chunks_hold_its_values(self):
        """Columns whose pandas chunks disagree (bools then ints, ints then huge unsigned ints,
        ints then floats) read through the host's mini-batch path, mini-batches straddling the
        chunk boundary included, concatenate to pandas.read_csv of the whole file."""
        import pandas as pd
        import parallelrun_host
        width, rows = 1024, 1100  # pandas: 512 rows per chunk
        columns = ["flag", "big", "ratio"] + ["c%d" % j for j in range(3, width)]
        lines = [",".join(columns)]
        for r in range(rows):
            first = r < 512
            lines.append(",".join([("True" if r % 3 else "False") if first else str(r % 2),
                                   str(r) if first else str(18446744073709551615 - r),
                                   str(r) if first else "%d.5" % r] + ["0"] * (width - 3)))
        path = os.path.join(self.tmp, "chunks.csv")
        with open(path, "w") as f:
            f.write("\n".join(lines) + "\n")
        host = parallelrun_host.Host({"PARALLELRUN_CONTROL_IN_FD": "0",
                                      "PARALLELRUN_CONTROL_OUT_FD": "1",
                                      "PARALLELRUN_ENTRY_SCRIPT": "score.py",
                                      "PARALLELRUN_INPUT_TYPE": "tabular",
                                      "PARALLELRUN_OUTPUT_DIR": self.tmp})
        ends = []
        offset = 0
        for line in lines:
            offset += len(line) + 1
            ends.append(offset)
        frames = []
        for first in range(0, rows, 97):  # 97 rows each: one mini-batch holds rows 485..581
            frames.append(host.read_table({"file": path, "format": "csv", "header_end": ends[0],
                                           "begin": ends[first],
                                           "end": ends[min(first + 97, rows)]}))
        whole = pd.read_csv(path)
        self.assertEqual([str(whole[c].dtype) for c in columns[:3]],
                         ["int64", "float64", "float64"])
        pd.testing.assert_frame_equal(pd.concat(frames, ignore_index=True), whole)


# A tabular script that names the worker that ran each mini-batch; run() starts once two workers
# have started, so that the first file's mini-batches are shared out (a worker leases at most 12).
WHO_SCRIPT = """
import os
import time

from parallelrun import EntryScript

started = os.path.join(EntryScript().output_dir, "started")


def init():
    os.makedirs(started, exist_ok=True)
    open(os.path.join(started, os.environ["PARALLELRUN_NODE"] + "-" +
                      os.environ["PARALLELRUN_PROCESS"]), "w").close()


def run(mini_batch):
    deadline = time.time() + 120
    while len(os.listdir(started)) < 2 and time.time() < deadline:
        time.sleep(0.05)
    return ["%s %s %d" % (os.environ["PARALLELRUN_NODE"], os.environ["PARALLELRUN_PROCESS"], i)
            for i in mini_batch["id"]]
"""


class SharedSchemaTest(JobTestCase):
    def test_each_file_is_parsed_once_per_job_however_many_workers_read_it(self):
        import glob
        import json
        names = []
        for f in range(3):
            rows = "".join("%d,%d,v%d\n" % (f * 1000 + i, i, i) for i in range(400))
            names.append(self.job.write("data/t%d.csv" % f, "id,n,text\n" + rows))
        self.job.write("code/score.py", WHO_SCRIPT)
        self.job.write_manifest(manifest(
            inputs=[{"name": "t", "type": "tabular", "source": {"path": "data/"}}],
            miniBatchSize=200, nodeCount=2, processCountPerNode=2, loggingLevel="DEBUG"))
        proc = self.job.run()
        self.assertExit(proc, 0)
        lines = self.job.output_lines()
        self.assertEqual(len(lines), 1200)
        # Several workers read mini-batches of the first file (of each, most likely) ...
        workers = {tuple(line.split()[:2]) for line in lines if int(line.split()[2]) < 1000}
        self.assertGreater(len(workers), 1, workers)
        # ... but each file was parsed whole once, by one of them, for the whole job.
        parsed = []
        for log in glob.glob(os.path.join(self.job.logs, "user", "stdout", "*", "*.txt")):
            with open(log) as fh:
                parsed.extend(line for line in fh if "parsed the whole of" in line)
        self.assertEqual(sorted(line.split("parsed the whole of ")[1].split(" ")[0]
                                for line in parsed), names, parsed)
        schemas = glob.glob(os.path.join(self.job.output, ".parallelrun", "schemas", "*.json"))
        self.assertEqual(len(schemas), 3)
        for path in schemas:
            with open(path) as fh:
                schema = json.load(fh)
            self.assertIn(schema["file"], names)
            self.assertEqual(schema["rows"], 400)
            self.assertEqual(schema["columns"], [["id", "int64"], ["n", "int64"],
                                                 ["text", "object"]])


# A tabular scoring script in the style of Azure ML's iris sample: the model comes from
# Model.get_model_path, metrics go to Run.get_context().
SCORE_TABLE_SCRIPT = """
import json

import pandas as pd
from azureml.core import Run
from azureml.core.model import Model

rules = None


def init():
    global rules
    model_path = Model.get_model_path("iris-rules")
    with open(model_path) as f:
        rules = json.load(f)
    Run.get_context().tag("model", model_path.rsplit("/", 1)[-1])


def run(mini_batch):
    run_context = Run.get_context()
    predictions = []
    for _, row in mini_batch.iterrows():
        kind = "setosa" if row["petal_length"] < rules["setosa_below"] else (
            "versicolor" if row["petal_width"] < rules["versicolor_below"] else "virginica")
        predictions.append(kind)
    run_context.log("rows", len(mini_batch))
    result = mini_batch[["id"]].copy()
    result["species"] = predictions
    return result
"""

COMPAT_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "runtime",
                          "hosts", "python", "azureml_compat")


class AzureMlCompatTest(JobTestCase):
    def test_model_path_and_run_context_in_a_tabular_scoring_script(self):
        import json
        import pandas as pd
        models = os.path.join(self.tmp, "models")
        self.job.write("models/iris-rules/1/rules.json",
                       json.dumps({"setosa_below": 2.5, "versicolor_below": 1.75}))
        self.job.write("models/other/weights.bin", "x")
        files = []
        for f in range(3):
            rows = "".join("%d,%.1f,%.1f\n" % (f * 100 + i, 1.0 + (i * 0.7) % 6, (i * 0.3) % 2.5)
                           for i in range(25))
            rel = "data/iris%d.csv" % f
            self.job.write(rel, "id,petal_length,petal_width\n" + rows)
            files.append(os.path.join(self.tmp, rel))
        self.job.write("code/score.py", SCORE_TABLE_SCRIPT)
        self.job.write_manifest(manifest(
            inputs=[{"name": "iris", "type": "tabular", "source": {"path": "data/"}}],
            env=[{"name": "AZUREML_MODEL_DIR", "value": models}], processCountPerNode=2))
        proc = self.job.run()
        self.assertExit(proc, 0)
        # The plain loop: one mini-batch per file (each is far under miniBatchSize's 1MB).
        os.environ["AZUREML_MODEL_DIR"] = models
        self.addCleanup(os.environ.pop, "AZUREML_MODEL_DIR")
        os.environ["PARALLELRUN_LOG_DIR"] = os.path.join(self.tmp, "reference-logs")
        self.addCleanup(os.environ.pop, "PARALLELRUN_LOG_DIR")
        sys.path.append(COMPAT_DIR)
        self.addCleanup(sys.path.remove, COMPAT_DIR)
        module = load_script(os.path.join(self.tmp, "code", "score.py"), [])
        expected = []
        for path in files:
            expected.extend(as_rows(module.run(pd.read_csv(path))))
        self.assertEqual(self.job.output_lines(), expected)
        self.assertEqual(len(expected), 75)
        records = []
        metrics = os.path.join(self.job.logs, "user", "metrics")
        for folder, _, names in os.walk(metrics):
            for name in names:
                with open(os.path.join(folder, name)) as f:
                    records.extend(json.loads(line) for line in f)
        self.assertEqual(sum(r["value"] for r in records if r["name"] == "rows"), 75)
        self.assertTrue(all(r["value"] == "rules.json" for r in records if r["kind"] == "tag"))

    def test_unknown_model_is_init_failed_naming_the_models_of_the_job(self):
        self.job.write("models/iris-rules/rules.json", "{}")
        self.job.write("models/wine/model.pkl", "x")
        self.make_files(2)
        self.job.write("code/score.py", "from azureml.core import Model\n"
                                        "def init():\n    Model.get_model_path('iris')\n"
                                        "def run(mini_batch):\n    return mini_batch\n")
        self.job.write_manifest(manifest(
            processCountPerNode=1,
            env=[{"name": "AZUREML_MODEL_DIR", "value": os.path.join(self.tmp, "models")}]))
        proc = self.job.run()
        self.assertExit(proc, 42)
        self.assertFirstLine(self.job.result(), "Failed: InitFailed")
        self.assertIn("the job's models: iris-rules, wine", self.job.result())


if __name__ == "__main__":
    unittest.main()
