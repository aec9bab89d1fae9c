"""spec.models and the azureml.core stand-ins (issue 16): a tabular scoring script in the style of
Azure ML's parallel-job samples loads its model with Model.get_model_path and logs with
Run.get_context(); `parallelrun run` gives the rows of a plain Python loop calling the same
init() and run() over the same mini-batches, and the metrics files hold what the script logged.

The stand-ins are also checked directly (no job) for the errors a script can meet."""
import importlib
import json
import os
import sys
import tempfile
import unittest

from jobkit import Job, JobTestCase, manifest  # noqa: F401 (Job: for tests/operator)

HERE = os.path.dirname(os.path.abspath(__file__))
COMPAT_DIR = os.path.join(HERE, "..", "..", "runtime", "hosts", "python", "azureml_compat")

# The scoring script: a linear model (one coefficient vector per class) in a JSON file, a label
# folder of two files; metrics of every kind the offline run records.
SCORE_SCRIPT = """
import json
import os

import pandas as pd
from azureml.core import Run
from azureml.core.model import Model

model = None
labels = None


def init():
    global model, labels
    model_path = Model.get_model_path("iris-linear", version="2")
    with open(model_path) as f:
        model = json.load(f)
    labels_dir = Model.get_model_path("iris-labels")
    with open(os.path.join(labels_dir, "names.txt")) as f:
        labels = dict(line.strip().split("=") for line in f if line.strip())
    run = Run.get_context()
    run.tag("model_file", os.path.basename(model_path))
    run.set_tags({"models": ",".join(sorted(os.listdir(os.environ["AZUREML_MODEL_DIR"]))),
                  "model_dir": os.environ["AZUREML_MODEL_DIR"]})


def run(mini_batch):
    features = model["features"]
    predictions, scores = [], []
    for _, row in mini_batch.iterrows():
        best, best_score = None, None
        for kind, weights in sorted(model["weights"].items()):
            score = model["bias"][kind] + sum(w * row[f] for w, f in zip(weights, features))
            if best_score is None or score > best_score:
                best, best_score = kind, score
        predictions.append(labels[best])
        scores.append(round(best_score, 4))
    result = mini_batch[["id"]].copy()
    result["species"] = predictions
    result["score"] = scores
    run_context = Run.get_context()
    run_context.log("rows_scored", len(mini_batch))
    run_context.log_list("first_ids", [int(i) for i in mini_batch["id"].head(3)])
    run_context.log_row("batch", first_id=int(mini_batch["id"].iloc[0]), rows=len(mini_batch))
    counts = result["species"].value_counts().sort_index()
    run_context.log_table("species_counts",
                          {"species": list(counts.index), "count": counts.tolist()})
    return result
"""

MODEL = {"features": ["sepal_length", "sepal_width", "petal_length", "petal_width"],
         "weights": {"a": [0.4, 1.2, -2.1, -1.0], "b": [0.1, -0.6, 0.4, -0.3],
                     "c": [-0.5, -0.6, 1.7, 1.3]},
         "bias": {"a": 1.0, "b": 1.4, "c": -2.6}}
LABELS = "a=setosa\nb=versicolor\nc=virginica\n"


def write_iris(job, files=3, rows=30):
    """CSV files of iris-like rows; returns their paths in mini-batch order."""
    paths = []
    for f in range(files):
        lines = ["id,sepal_length,sepal_width,petal_length,petal_width"]
        for i in range(rows):
            n = f * rows + i
            lines.append("%d,%.1f,%.1f,%.1f,%.1f" % (n, 4.5 + (n * 7 % 30) / 10.0,
                                                     2.0 + (n * 3 % 22) / 10.0,
                                                     1.0 + (n * 11 % 59) / 10.0,
                                                     0.1 + (n * 5 % 24) / 10.0))
        paths.append(job.write("data/iris%d.csv" % f, "\n".join(lines) + "\n"))
    return paths


def write_models(job):
    job.write("models/linear/v2/coefficients.json", json.dumps(MODEL))
    job.write("models/labels/names.txt", LABELS)
    job.write("models/labels/README", "label names of the classes\n")
    return [{"name": "iris-linear", "version": "2", "source": {"path": "models/linear/v2"}},
            {"name": "iris-labels", "source": {"path": "models/labels"}}]


def metric_records(root):
    """{relative path: [records without their time]} of every metrics file under root."""
    out = {}
    for folder, _, names in os.walk(root):
        for name in names:
            path = os.path.join(folder, name)
            with open(path) as f:
                records = [json.loads(line) for line in f]
            for r in records:
                assert r.pop("time").endswith("Z"), r
            out[os.path.relpath(path, root)] = records
    return out


def fresh_compat(env):
    """The stand-in modules, imported anew under `env` (the run context is per process)."""
    for name in [m for m in sys.modules if m == "azureml" or m.startswith("azureml.")]:
        del sys.modules[name]
    os.environ.update(env)
    if COMPAT_DIR not in sys.path:
        sys.path.append(COMPAT_DIR)
    return importlib.import_module("azureml.core")


class ModelsJobTest(JobTestCase):
    def setUp(self):
        super().setUp()
        saved = dict(os.environ)
        self.addCleanup(lambda: (os.environ.clear(), os.environ.update(saved)))
        self.addCleanup(lambda: sys.path.remove(COMPAT_DIR) if COMPAT_DIR in sys.path else None)

    def reference(self, models, files):
        """The plain loop: init() once, run() on each file's DataFrame (one mini-batch per file:
        each is far under the default 1MB), with the stand-ins over the same model folders."""
        import pandas as pd
        links = os.path.join(self.tmp, "reference-models")
        os.makedirs(links)
        paths = {}
        for m in models:
            os.symlink(os.path.join(self.tmp, m["source"]["path"]), os.path.join(links, m["name"]))
            paths[m["name"]] = {"version": m.get("version"),
                                "path": os.path.join(links, m["name"])}
        fresh_compat({"AZUREML_MODEL_DIR": links, "PARALLELRUN_MODELS": json.dumps(paths),
                      "PARALLELRUN_LOG_DIR": os.path.join(self.tmp, "reference-logs")})
        sys.path.insert(0, os.path.join(self.tmp, "code"))
        try:
            module = importlib.import_module("score")
        finally:
            sys.path.pop(0)
            sys.modules.pop("score", None)
        module.init()
        rows = []
        for path in files:
            result = module.run(pd.read_csv(path))
            rows.extend(result.to_csv(sep=" ", index=False, header=False).splitlines())
        return rows

    def test_scoring_script_with_models_matches_a_plain_loop_and_logs_metrics(self):
        models = write_models(self.job)
        files = write_iris(self.job)
        self.job.write("code/score.py", SCORE_SCRIPT)
        self.job.write_manifest(manifest(
            inputs=[{"name": "iris", "type": "tabular", "source": {"path": "data/"}}],
            models=models, processCountPerNode=2, miniBatchSize="1MB"))
        proc = self.job.run()
        self.assertExit(proc, 0)
        expected = self.reference(models, files)
        self.assertEqual(len(expected), 90)
        self.assertEqual(self.job.output_lines(), expected)

        got = metric_records(os.path.join(self.job.logs, "user", "metrics"))
        want = metric_records(os.path.join(self.tmp, "reference-logs", "user", "metrics"))
        # One file per worker process that ran: <node>/<process>.jsonl.
        self.assertTrue(got)
        for rel in got:
            node, process = rel.split(os.sep)
            self.assertEqual(node, "127.0.0.1")
            self.assertRegex(process, r"^process\d{3}\.jsonl$")
        records = [r for rs in got.values() for r in rs]
        per_batch = sorted((json.dumps(r, sort_keys=True) for r in records if r["kind"] != "tag"))
        want_records = [r for rs in want.values() for r in rs]
        self.assertEqual(per_batch, sorted(json.dumps(r, sort_keys=True)
                                           for r in want_records if r["kind"] != "tag"))
        self.assertEqual(sum(r["value"] for r in records if r["name"] == "rows_scored"), 90)
        self.assertIn({"kind": "log_row", "name": "batch", "value": {"first_id": 30, "rows": 30},
                       "description": ""}, records)
        tags = [r for r in records if r["kind"] == "tag"]
        # Every worker that started tagged its run in init(): the model file (a single-file
        # model folder resolves to the file) and the models under AZUREML_MODEL_DIR.
        self.assertTrue(tags)
        for r in tags:
            if r["name"] == "model_dir":
                # Locally: the run's folder of links, gone with the run.
                self.assertRegex(r["value"], r"^/tmp/parallelrun-run-[^/]+/models$")
                self.assertFalse(os.path.exists(r["value"]))
                continue
            self.assertIn((r["name"], r["value"]), [("model_file", "coefficients.json"),
                                                     ("models", "iris-labels,iris-linear")])

    def test_unknown_model_is_init_failed_naming_the_models_of_the_job(self):
        models = write_models(self.job)
        self.make_files(2)
        self.job.write("code/score.py", "from azureml.core.model import Model\n"
                                        "def init():\n    Model.get_model_path('iris')\n"
                                        "def run(mini_batch):\n    return mini_batch\n")
        self.job.write_manifest(manifest(processCountPerNode=1, models=models))
        proc = self.job.run()
        self.assertExit(proc, 42)
        self.assertFirstLine(self.job.result(), "Failed: InitFailed")
        self.assertIn("Model.get_model_path('iris'): the job has no such model; the job's "
                      "models: iris-labels, iris-linear (version 2)", self.job.result())

    def test_missing_model_folder_and_env_clash_are_refused_before_the_start(self):
        self.make_files(1)
        self.job.write("code/score.py", "def run(mini_batch):\n    return mini_batch\n")
        self.job.write_manifest(manifest(models=[{"name": "m", "source": {"path": "nowhere"}}]))
        proc = self.job.run()
        self.assertExit(proc, 1)
        self.assertIn("spec.models[0].source: model %s does not exist"
                      % os.path.join(self.tmp, "nowhere"), proc.stderr)
        self.job.write("models/m/x.bin", "x")
        self.job.write_manifest(manifest(
            models=[{"name": "m", "source": {"path": "models/m"}}],
            env=[{"name": "AZUREML_MODEL_DIR", "value": "/elsewhere"}]))
        proc = self.job.run()
        self.assertExit(proc, 1)
        self.assertIn("spec.env[0].name", proc.stderr)
        self.assertFalse(os.path.exists(self.job.output))


class CompatTest(unittest.TestCase):
    """The stand-ins on their own, as a worker process sees them."""

    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="parallelrun-compat-")
        saved = dict(os.environ)
        self.addCleanup(lambda: (os.environ.clear(), os.environ.update(saved)))
        self.addCleanup(lambda: sys.path.remove(COMPAT_DIR) if COMPAT_DIR in sys.path else None)
        import shutil
        self.addCleanup(shutil.rmtree, self.tmp, True)
        for rel, text in (("one/model.pkl", "1"), ("many/a.bin", "a"), ("many/b.bin", "b"),
                          ("hidden/.meta", "m"), ("hidden/weights.pt", "w")):
            os.makedirs(os.path.dirname(os.path.join(self.tmp, rel)), exist_ok=True)
            with open(os.path.join(self.tmp, rel), "w") as f:
                f.write(text)
        models = {n: {"version": v, "path": os.path.join(self.tmp, n)}
                  for n, v in (("one", "3"), ("many", None), ("hidden", None))}
        self.core = fresh_compat({"AZUREML_MODEL_DIR": self.tmp,
                                  "PARALLELRUN_MODELS": json.dumps(models),
                                  "PARALLELRUN_LOG_DIR": os.path.join(self.tmp, "logs"),
                                  "PARALLELRUN_NODE": "10.0.0.7",
                                  "PARALLELRUN_PROCESS": "process004"})

    def test_get_model_path_resolves_single_files_folders_and_versions(self):
        Model = self.core.Model
        from azureml.core.model import Model as ModelToo
        self.assertIs(Model, ModelToo)
        self.assertEqual(Model.get_model_path("one"), os.path.join(self.tmp, "one", "model.pkl"))
        self.assertEqual(Model.get_model_path("one", version=3),
                         os.path.join(self.tmp, "one", "model.pkl"))
        self.assertEqual(Model.get_model_path("many"), os.path.join(self.tmp, "many"))
        self.assertEqual(Model.get_model_path("hidden"),
                         os.path.join(self.tmp, "hidden", "weights.pt"))

    def test_unknown_names_and_other_versions_name_the_models_of_the_job(self):
        Model = self.core.Model
        with self.assertRaises(RuntimeError) as e:
            Model.get_model_path("two")
        self.assertEqual(str(e.exception),
                         "Model.get_model_path('two'): the job has no such model; the job's "
                         "models: hidden, many, one (version 3) (spec.models)")
        with self.assertRaises(RuntimeError) as e:
            Model.get_model_path("one", version=2)
        self.assertIn("the job's model 'one' has version 3 in spec.models", str(e.exception))
        with self.assertRaises(RuntimeError) as e:
            Model.get_model_path("many", version="1")
        self.assertIn("the job's model 'many' has no version in spec.models", str(e.exception))

    def test_offline_run_writes_every_kind_of_record_to_its_process_file(self):
        import numpy
        run = self.core.Run.get_context()
        self.assertIs(run, self.core.Run.get_context())
        self.assertTrue(run.id.startswith("OfflineRun_"))
        run.log("accuracy", numpy.float64(0.5), description="d")
        run.log_list("losses", numpy.array([3, 2]))
        run.log_row("row", x=1, y=numpy.int64(2))
        run.log_table("table", {"a": [1, 2], "b": numpy.array([0.5, 1.5])})
        run.tag("stage", "score")
        run.set_tags({"owner": "me", "try": 2})
        self.assertEqual(run.get_tags(), {"stage": "score", "owner": "me", "try": 2})
        path = os.path.join(self.tmp, "logs", "user", "metrics", "10.0.0.7", "process004.jsonl")
        with open(path) as f:
            records = [json.loads(line) for line in f]
        for r in records:
            self.assertRegex(r.pop("time"), r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
        self.assertEqual(records, [
            {"kind": "log", "name": "accuracy", "value": 0.5, "description": "d"},
            {"kind": "log_list", "name": "losses", "value": [3, 2], "description": ""},
            {"kind": "log_row", "name": "row", "value": {"x": 1, "y": 2}, "description": ""},
            {"kind": "log_table", "name": "table", "value": {"a": [1, 2], "b": [0.5, 1.5]},
             "description": ""},
            {"kind": "tag", "name": "stage", "value": "score"},
            {"kind": "tag", "name": "owner", "value": "me"},
            {"kind": "tag", "name": "try", "value": 2}])


if __name__ == "__main__":
    unittest.main()
