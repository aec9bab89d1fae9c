"""Helpers for integration tests: build a job folder (manifest, entry script, input data) in a
temporary directory and run the real `parallelrun` binary on it."""
import csv
import glob
import json
import os
import shutil
import subprocess
import tempfile
import unittest

BIN = os.environ.get("PARALLELRUN_BIN") or os.path.join(
    os.path.dirname(__file__), "..", "..", "build", "bin", "parallelrun")
PYTHON = "/usr/bin/python3"


def manifest(name="itest", **spec):
    """A manifest dict with sensible defaults; keyword arguments override spec fields."""
    base = {
        "entryScript": "score.py",
        "sourceDirectory": {"path": "code/"},
        "inputs": [{"name": "docs", "type": "file", "source": {"path": "data/"}}],
        "output": {"path": "output/"},
        "miniBatchSize": 5,
        "nodeCount": 1,
        "processCountPerNode": 2,
        "runInvocationTimeout": 60,
    }
    base.update(spec)
    return {"apiVersion": "parallelrun.io/v1alpha1", "kind": "ParallelRunJob",
            "metadata": {"name": name}, "spec": base}


class Job:
    def __init__(self, root):
        self.root = root
        self.output = os.path.join(root, "output")
        self.logs = os.path.join(self.output, "logs")

    def write(self, rel, content, mode="w"):
        path = os.path.join(self.root, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, mode) as f:
            f.write(content)
        return path

    def write_manifest(self, m, rel="job.yaml"):
        # JSON is YAML: the manifest is written as JSON for easy composition.
        return self.write(rel, json.dumps(m, indent=2))

    def run(self, *extra, manifest_rel="job.yaml", timeout=300, command="run"):
        args = [BIN, command, os.path.join(self.root, manifest_rel), *extra]
        proc = subprocess.run(args, cwd=self.root, capture_output=True, text=True, timeout=timeout)
        return proc

    def read(self, rel):
        with open(os.path.join(self.root, rel)) as f:
            return f.read()

    def output_lines(self, name="parallel_run_step.txt"):
        return self.read(os.path.join("output", name)).splitlines()

    def report_rows(self):
        path = os.path.join(self.logs, "sys", "job_report", "processed_mini-batches.csv")
        with open(path, newline="") as f:
            return list(csv.DictReader(f))

    def result(self):
        return self.read("output/logs/job_result.txt")


class JobTestCase(unittest.TestCase):
    maxDiff = None

    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="parallelrun-itest-")
        self.addCleanup(shutil.rmtree, self.tmp, True)
        self.job = Job(self.tmp)

    def make_files(self, n, folder="data", prefix="f", content=None):
        names = []
        for i in range(n):
            name = f"{prefix}{i:04d}.txt"
            self.job.write(os.path.join(folder, name), content if content is not None else f"item {i}\n")
            names.append(name)
        return names

    def assertExit(self, proc, code):
        self.assertEqual(proc.returncode, code,
                         f"exit {proc.returncode}, expected {code}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}")

    def assertFirstLine(self, text, expected):
        self.assertEqual(text.splitlines()[0] if text else "", expected, text)


def glob_logs(job, pattern):
    return sorted(glob.glob(os.path.join(job.logs, pattern)))


def read_text(path):
    with open(path) as f:
        return f.read()
