"""The README's "On Kubernetes" block runs as written on a local test cluster.

The block's commands are read from README.md (so a changed README changes what runs) and run with
`bash` from a temporary folder that has `charts/` (the repository's chart) and a `job.yaml`: the
score-files example whose data lives on a PersistentVolumeClaim. `kubectl get prj -w` runs until
the job shows Succeeded (bounded by a deadline); `<job>` is the job's name. Nothing is waited
for between the lines: `helm install --wait` must return only once the admission webhook answers
(an operator pod is Ready only then), or `kubectl apply` is refused. Then the job must
have Succeeded with one output row per input file.

Environment (set by CTest): PARALLELRUN_BIN, OPERATOR_BIN, TESTCLUSTER_BIN, and
PARALLELRUN_TEST_RUNTIME=container with PARALLELRUN_TEST_IMAGE=parallelrun:<version> (the chart's
default image, in the local podman storage).
"""

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import unittest

import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "tests", "operator"))
sys.path.insert(0, os.path.join(ROOT, "tests", "chart"))
import chartlib  # noqa: E402
from test_operator_e2e import (EXAMPLE, Cluster, cluster_manifest, make_claim,  # noqa: E402
                               score_files_source)

JOB = "score-files"
CLAIM = "score-files-data"
WATCH_TIMEOUT_S = 300


def readme_cluster_commands():
    """The commands of the first ```sh block under "## On Kubernetes", comments removed."""
    with open(os.path.join(ROOT, "README.md")) as f:
        text = f.read()
    section = text.split("\n## On Kubernetes\n", 1)[1]
    block = re.search(r"```sh\n(.*?)```", section, re.S).group(1)
    commands = [re.sub(r"\s+#.*$", "", line).strip() for line in block.splitlines()]
    return [c for c in commands if c]


class ReadmeClusterTest(unittest.TestCase):
    def setUp(self):
        os.environ["PATH"] = (os.path.dirname(os.environ["PARALLELRUN_BIN"]) + os.pathsep +
                              os.environ["PATH"])
        self.cluster = Cluster()
        self.addCleanup(self.cluster.down)
        self.work = tempfile.mkdtemp(prefix="readme-cluster-", dir=self.cluster.dir)
        os.symlink(os.path.join(ROOT, "charts"), os.path.join(self.work, "charts"))
        data = make_claim(self.cluster, CLAIM)
        for d in ("code", "data"):
            shutil.copytree(os.path.join(EXAMPLE, d), os.path.join(data, d))
        self.data = data
        self.inputs = len(os.listdir(os.path.join(data, "data", "documents")))
        manifest = cluster_manifest(JOB, data, score_files_source(), claim=CLAIM)
        with open(os.path.join(self.work, "job.yaml"), "w") as f:
            yaml.safe_dump(manifest, f, sort_keys=False)
        self.env = dict(chartlib.helm_env(), KUBECONFIG=self.cluster.kubeconfig,
                        HOME=self.work)

    def sh(self, command, timeout=300):
        out = subprocess.run(["bash", "-euo", "pipefail", "-c", command], cwd=self.work,
                             env=self.env, capture_output=True, text=True, timeout=timeout)
        self.assertEqual(out.returncode, 0, f"`{command}` failed:\n{out.stdout}{out.stderr}")
        return out.stdout

    def watch_until_succeeded(self, command):
        """Runs the watch until a line of the job says Succeeded; returns what it printed."""
        proc = subprocess.Popen(["bash", "-c", "exec " + command], cwd=self.work, env=self.env,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        lines, seen = [], threading.Event()

        def reader():
            for line in proc.stdout:
                lines.append(line.rstrip("\n"))
                if line.split()[:2] == [JOB, "Succeeded"]:
                    seen.set()
            seen.set()  # the watch ended

        thread = threading.Thread(target=reader, daemon=True)
        thread.start()
        try:
            seen.wait(WATCH_TIMEOUT_S)
        finally:
            proc.kill()
            proc.wait()
            thread.join(10)
            proc.stdout.close()
        if any(line.split()[:2] == [JOB, "Succeeded"] for line in lines):
            return lines
        self.fail("`%s` never showed %s Succeeded:\n%s" % (command, JOB, "\n".join(lines)))

    def test_readme_block_runs_as_written(self):
        commands = readme_cluster_commands()
        self.assertEqual([c.split()[:2] for c in commands],
                         [["helm", "install"], ["kubectl", "apply"], ["kubectl", "get"],
                          ["kubectl", "describe"], ["kubectl", "logs"]], commands)
        outputs = {}
        for command in commands:
            command = command.replace("<job>", JOB)
            if command.startswith("kubectl get prj -w"):
                outputs["watch"] = self.watch_until_succeeded(command)
            else:
                outputs[command.split()[1]] = self.sh(command)

        self.assertIn(f"parallelrunjob.parallelrun.io/{JOB} created", outputs["apply"])
        self.assertEqual(outputs["watch"][0].split()[:6],
                         ["NAME", "PHASE", "PROGRESS", "FAILED", "NODES", "ETA"])
        self.assertRegex(outputs["describe"], r"Phase:\s+Succeeded")
        self.assertIn("Events:", outputs["describe"])
        self.assertIn(f"Job {JOB} started", outputs["logs"])
        self.assertRegex(outputs["logs"], r"Succeeded: \d+ mini-batches processed")
        job = json.loads(self.cluster.kubectl("get", "prj", JOB, "-o", "json").stdout)
        self.assertEqual(job["status"]["phase"], "Succeeded", job["status"])
        with open(os.path.join(self.data, "output", "rows.txt")) as f:
            rows = [r for r in f.read().splitlines() if r.strip()]
        # One row per item that succeeded, each naming its own input; the example's one
        # too-short document fails by design (within its errorThreshold).
        items = job["status"]["items"]
        self.assertEqual(items["succeeded"] + items.get("failed", 0), self.inputs, items)
        self.assertEqual(len(rows), items["succeeded"], rows)
        named = {r.split()[0] for r in rows}
        self.assertEqual(len(named), len(rows), rows)
        self.assertTrue(named <= set(os.listdir(os.path.join(self.data, "data", "documents"))))

if __name__ == "__main__":
    unittest.main()
