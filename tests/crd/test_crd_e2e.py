"""The ParallelRunJob CRD through the real kubectl against the local test cluster.

What a user meets at `kubectl apply`: the CRD installs, valid jobs are stored with the schema's
defaults, typos and invalid values are rejected with field paths, `kubectl get prj` shows the
printer columns from a status written through the status subresource, and `kubectl wait
--for=condition=Complete` works. Run by CTest (crd.e2e_kubectl) with TESTCLUSTER_BIN set.
"""

import copy
import json
import os
import shutil
import subprocess
import tempfile
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
CRD = os.path.join(ROOT, "crds", "parallelrun.io_parallelrunjobs.yaml")
WRAPPER = os.path.join(ROOT, "tests", "cluster", "testcluster")
KUBECTL = os.environ.get("KUBECTL", "/usr/bin/kubectl")

# The example of SPEC.md §2.
EXAMPLE = {
    "apiVersion": "parallelrun.io/v1alpha1",
    "kind": "ParallelRunJob",
    "metadata": {"name": "score-images"},
    "spec": {
        "entryScript": "score.py",
        "sourceDirectory": {"volume": "data", "path": "code/scorer/"},
        "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": "images"}}],
        "inputs": [{"name": "images", "type": "file",
                    "source": {"volume": "data", "path": "incoming/"}, "pattern": "*.jpg"}],
        "sideInputs": [{"name": "model", "source": {"volume": "data", "path": "models/resnet/"}}],
        "output": {"volume": "data", "path": "runs/score-images/"},
        "arguments": ["--model-dir", "$(sideInputs.model)", "--threshold", "0.7"],
        "miniBatchSize": "10",
        "errorThreshold": 10,
        "outputAction": "append_row",
        "appendRowFileName": "parallel_run_step.txt",
        "nodeCount": 4,
        "processCountPerNode": 2,
        "loggingLevel": "INFO",
        "runInvocationTimeout": 60,
        "runMaxTry": 3,
        "image": "parallelrun:0.1",
        "resources": {"limits": {"nvidia.com/gpu": 2}},
    },
}


def job(name, **spec_changes):
    j = copy.deepcopy(EXAMPLE)
    j["metadata"]["name"] = name
    j["spec"].update(spec_changes)
    return j


class CrdE2eTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.dir = tempfile.mkdtemp(prefix="crd-e2e-")
        out = subprocess.run([WRAPPER, "up", "--state", cls.dir], capture_output=True, text=True,
                             timeout=120)
        if out.returncode != 0:
            shutil.rmtree(cls.dir, ignore_errors=True)
            raise RuntimeError("testcluster up failed: %s %s" % (out.stdout, out.stderr))
        cls.kubeconfig = out.stdout.strip().splitlines()[-1]
        try:
            cls.kubectl("apply", "-f", CRD)
            cls.kubectl("wait", "--for=condition=Established",
                        "crd/parallelrunjobs.parallelrun.io", "--timeout=60s")
        except Exception:
            cls.tearDownClass()
            raise

    @classmethod
    def tearDownClass(cls):
        subprocess.run([WRAPPER, "down", "--state", cls.dir], capture_output=True, timeout=120)
        shutil.rmtree(cls.dir, ignore_errors=True)

    @classmethod
    def kubectl(cls, *args, check=True, input=None, timeout=120):
        cache = tempfile.mkdtemp(prefix="kc-", dir=cls.dir)
        cmd = [KUBECTL, "--kubeconfig", cls.kubeconfig, "--cache-dir", cache] + list(args)
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, input=input)
        if check and out.returncode != 0:
            raise AssertionError("kubectl %s failed (%d): %s %s" % (
                " ".join(args), out.returncode, out.stdout, out.stderr))
        return out

    def apply(self, obj, check=True):
        return self.kubectl("apply", "-f", "-", input=json.dumps(obj), check=check)

    def get(self, name):
        return json.loads(self.kubectl("get", "prj", name, "-o", "json").stdout)

    def test_example_is_stored_with_the_schema_defaults(self):
        self.assertIn("parallelrunjob.parallelrun.io/score-images created",
                      self.apply(job("score-images")).stdout)
        spec = self.get("score-images")["spec"]
        self.assertEqual(spec["errorThreshold"], 10)
        self.assertEqual(spec["allowedFailedCount"], -1)
        self.assertEqual(spec["allowedFailedPercent"], 100)
        self.assertEqual(spec["backoffLimit"], 6)
        self.assertEqual(spec["resourceMonitorInterval"], 600)
        self.assertEqual(spec["suspend"], False)
        self.assertEqual(spec["inputs"][0]["type"], "file")
        # Type-dependent and derived defaults are the job-spec model's, not the schema's.
        self.assertNotIn("progressUpdateTimeout", spec)
        self.assertEqual(spec["resources"], {"limits": {"nvidia.com/gpu": 2}})  # kept opaque

    def test_integer_mini_batch_size_is_accepted(self):
        self.apply(job("int-size", miniBatchSize=25))
        self.assertEqual(self.get("int-size")["spec"]["miniBatchSize"], 25)

    def test_typo_is_rejected_by_strict_field_validation(self):
        bad = job("typo")
        bad["spec"]["nodeCont"] = 3
        bad["spec"]["output"]["volumee"] = "data"
        out = self.apply(bad, check=False)
        self.assertNotEqual(out.returncode, 0)
        self.assertIn('strict decoding error', out.stderr)
        self.assertIn('unknown field "spec.nodeCont"', out.stderr)
        self.assertIn('unknown field "spec.output.volumee"', out.stderr)

    def test_invalid_values_are_reported_together_with_paths(self):
        out = self.apply(job("bad-values", nodeCount=0, loggingLevel="info",
                             entryScript="../score.py", miniBatchSize="0",
                             appendRowFileName="a/b"), check=False)
        self.assertNotEqual(out.returncode, 0)
        self.assertIn('The ParallelRunJob "bad-values" is invalid', out.stderr)
        for expected in ("spec.nodeCount: Invalid value: 0",
                         'spec.loggingLevel: Unsupported value: "info"',
                         "spec.entryScript: Invalid value",
                         "spec.miniBatchSize: Invalid value",
                         "spec.appendRowFileName: Invalid value"):
            self.assertIn(expected, out.stderr)

    def test_resource_quantities_are_checked_at_apply(self):
        good = {"limits": {"cpu": 2, "memory": "4Gi", "nvidia.com/gpu": 1},
                "requests": {"cpu": "500m", "memory": "1.5e9"}, "claims": [{"name": "x"}]}
        self.apply(job("quantities", resources=good))
        self.assertEqual(self.get("quantities")["spec"]["resources"], good)  # nothing pruned
        out = self.apply(job("bad-quantity", resources={"limits": {"cpu": "lots"},
                                                         "requests": {"memory": "4 GB"}}),
                         check=False)
        self.assertNotEqual(out.returncode, 0)
        self.assertIn('spec.resources.limits.cpu: Invalid value: "lots"', out.stderr)
        self.assertIn('spec.resources.requests.memory: Invalid value: "4 GB"', out.stderr)

    def test_missing_required_fields(self):
        bad = job("no-output")
        del bad["spec"]["output"]
        bad["spec"]["inputs"] = []
        out = self.apply(bad, check=False)
        self.assertNotEqual(out.returncode, 0)
        self.assertIn("spec.output: Required value", out.stderr)
        self.assertIn("spec.inputs", out.stderr)

    def test_printer_columns_short_name_category_and_wait(self):
        self.apply(job("shown"))
        table = self.kubectl("get", "prj", "shown").stdout.splitlines()
        self.assertEqual(table[0].split(),
                         ["NAME", "PHASE", "PROGRESS", "FAILED", "NODES", "ETA", "REASON",
                          "AGE"])
        status = {
            "observedGeneration": 1, "phase": "Running",
            "conditions": [{"type": "Running", "status": "True", "reason": "Started",
                            "message": "4 agents", "lastTransitionTime": "2026-11-23T11:00:00Z",
                            "observedGeneration": 1}],
            "startTime": "2026-11-23T11:00:00Z",
            "miniBatches": {"total": 10, "completed": 4, "failed": 1, "running": 2, "retried": 1},
            "items": {"total": 100, "succeeded": 38, "failed": 2},
            "nodes": {"desired": 4, "ready": 3},
            "progress": "4/10", "eta": "0:01:00",
            "estimatedCompletionTime": "2026-11-23T11:01:00Z",
            "reason": "Unschedulable", "message": "pod shown-worker-1: 0/3 nodes are available",
            "output": {"volume": "data", "path": "out", "file": "rows.txt"},
            "logs": {"volume": "data", "path": "out/logs"},
        }
        self.kubectl("patch", "prj", "shown", "--subresource=status", "--type=merge",
                     "-p", json.dumps({"status": status}))
        row = self.kubectl("get", "prj", "shown", "--no-headers").stdout.split()
        self.assertEqual(row[:7], ["shown", "Running", "4/10", "2", "3", "0:01:00",
                                   "Unschedulable"])
        wide = self.kubectl("get", "prj", "shown", "-o", "wide").stdout.splitlines()
        self.assertEqual(wide[0].split()[-2:], ["AGE", "MESSAGE"])
        self.assertTrue(wide[1].endswith("pod shown-worker-1: 0/3 nodes are available"), wide)
        self.assertEqual(self.get("shown")["status"], status)  # nothing pruned
        self.assertIn("parallelrunjob.parallelrun.io/shown",
                      self.kubectl("get", "all", "-o", "name").stdout.split())
        self.kubectl("patch", "prj", "shown", "--subresource=status", "--type=merge", "-p",
                     json.dumps({"status": {"phase": "Succeeded", "conditions": [
                         {"type": "Complete", "status": "True", "reason": "Completed",
                          "lastTransitionTime": "2026-11-23T11:02:00Z",
                          "observedGeneration": 1}]}}))
        out = self.kubectl("wait", "--for=condition=Complete", "prj/shown", "--timeout=60s")
        self.assertIn("condition met", out.stdout)

    def test_status_with_a_bad_phase_is_rejected(self):
        self.apply(job("bad-phase"))
        out = self.kubectl("patch", "prj", "bad-phase", "--subresource=status", "--type=merge",
                           "-p", '{"status": {"phase": "Done"}}', check=False)
        self.assertNotEqual(out.returncode, 0)
        self.assertIn('status.phase: Unsupported value: "Done"', out.stderr)


if __name__ == "__main__":
    unittest.main()
