"""Helpers for integration tests: build a job folder (manifest, entry script, input data) in a
temporary directory and run the real `parallelrun` binary on it."""
import csv
import glob
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
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


def wait_for(what, predicate, timeout):
    """Polls predicate until it returns something truthy; fails naming `what` after timeout s."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)


def children_running(parent_pid, needle):
    """Pids whose parent is parent_pid and whose command line contains needle (via /proc)."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
            # The command name is in parentheses and may hold spaces: split after the last ')'.
            fields = stat[stat.rindex(")") + 2:].split()
            if int(fields[1]) != parent_pid or fields[0] == "Z":
                continue
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmdline = f.read().replace(b"\0", b" ").decode(errors="replace")
        except (OSError, ValueError):
            continue  # gone meanwhile
        if needle in cmdline:
            pids.append(int(entry))
    return pids


class Cluster:
    """A standalone `parallelrun coordinator` and `parallelrun agent` processes of one job (the
    job's job.yaml), as in a cluster. Remembers every process so that cleanup() can SIGKILL and
    reap them all; each process's output goes to <job root>/<name>.<n>.log."""

    def __init__(self, job, token_file, nodes):
        self.job = job
        self.token_file = token_file
        self.nodes = nodes
        self.coordinator = None
        self.agents = {}
        self.all = []
        self.logs = []
        self.url = None
        self.incarnation = 0

    def _spawn(self, args, name, env=None):
        path = os.path.join(self.job.root, f"{name}.{len(self.all)}.log")
        log = open(path, "w")
        p = subprocess.Popen(args, cwd=self.job.root, stdout=log, stderr=subprocess.STDOUT,
                             env=env, start_new_session=True)
        log.close()
        self.all.append(p)
        self.logs.append(path)
        return p

    def log_of(self, p):
        """What process p (started here) printed."""
        return read_text(self.logs[self.all.index(p)])

    def start_coordinator(self, listen="127.0.0.1:0"):
        """Starts a coordinator on `listen` (ADDR:PORT; port 0 picks one) and waits for its
        address; `same_address()` gives the listen value of the current one, for a restart."""
        self.incarnation += 1
        address_file = os.path.join(self.job.root, f"address.{self.incarnation}")
        self.coordinator = self._spawn(
            [BIN, "coordinator", "--spec", os.path.join(self.job.root, "job.yaml"),
             "--listen", listen, "--token-file", self.token_file,
             "--address-file", address_file, "--paths", "local",
             "--manifest-dir", self.job.root, "--nodes", str(len(self.nodes)), "--no-echo"],
            "coordinator")

        def address():
            if self.coordinator.poll() is not None:
                raise AssertionError(f"coordinator exited {self.coordinator.returncode} at start:\n"
                                     + self.log_of(self.coordinator))
            try:
                with open(address_file) as f:
                    return f.read().strip()
            except OSError:
                return None

        self.url = wait_for("the coordinator's address file", address, 60)

    def same_address(self):
        return self.url.split("://", 1)[1]

    def start_agent(self, node):
        env = dict(os.environ, PARALLELRUN_PYTHON=PYTHON)
        self.agents[node] = self._spawn(
            [BIN, "agent", "--coordinator", self.url, "--token-file", self.token_file,
             "--node-name", node], "agent-" + node, env)
        return self.agents[node]

    def kill(self, p, sig=signal.SIGKILL):
        p.send_signal(sig)
        p.wait()

    def cleanup(self):
        for p in self.all:
            if p.poll() is None:
                p.send_signal(signal.SIGKILL)
            p.wait()
