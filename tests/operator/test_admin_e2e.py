"""The admin's view of a job through kubectl (issue 15), end to end on the test cluster with the
real kubectl, the chart installed by the real helm (ChartOperatorCluster):

- `kubectl explain` describes every spec and status field (no `<no description>`, no developer
  notes), whatever fields the CRD has;
- a semantically invalid job is refused by `kubectl apply` (and `--dry-run=server`) naming the
  field;
- a job with a retried mini-batch, watched with `kubectl get prj -w -o json`: its numbers add up
  at every status update; each event once; REASON and, with -o wide, MESSAGE columns;
- /metrics has exactly the documented metrics (docs/operations.md's table: names and types),
  per-job series that vanish with the job, and no reconcile error;
- an event repeated by a second suspend is counted on the first (count 2), and a job applied
  again on a deleted job's output folder fails with OutputInUse naming the owner, volume and path.

Environment as tests/operator/test_operator_e2e.py (set by CTest).
"""

import json
import os
import re
import shutil
import subprocess
import threading
import unittest
import urllib.request

from test_operator_e2e import (ROOT, EXAMPLE, ChartOperatorCluster, apply, cluster_manifest,
                               make_claim, make_slow_data, score_files_source, slow_source,
                               wait_until)

NS = "admin-view"
OPERATIONS = os.path.join(ROOT, "docs", "operations.md")
TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
DEVELOPER_WORDS = ("job-spec model", "schema default", "the model ")


def documented_metrics():
    """{name: type} from the metric table of docs/operations.md."""
    with open(OPERATIONS) as f:
        text = f.read()
    table = text[text.index("| metric | type | what |"):]
    table = table[:table.index("\n\n")]
    out = {}
    for row in table.splitlines()[2:]:
        cells = [c.strip() for c in row.strip("|").split("|")]
        out[cells[0].strip("`").split("{")[0]] = cells[1]
    return out


def served_metrics(text):
    """{name: type} from the `# TYPE` lines of a /metrics answer."""
    return {m.group(1): m.group(2)
            for m in re.finditer(r"^# TYPE (\S+) (\S+)$", text, re.MULTILINE)}


def json_stream(text):
    """The JSON documents of `kubectl get -w -o json` output, in order."""
    decoder, out, i = json.JSONDecoder(), [], 0
    while True:
        while i < len(text) and text[i].isspace():
            i += 1
        if i >= len(text):
            return out
        try:
            obj, i = decoder.raw_decode(text, i)
        except ValueError:
            return out  # a document cut short when the watch was stopped
        out.append(obj)


def schema_objects(schema, path):
    """Paths of every object node (with properties) under `schema`, `path` first."""
    out = [path] if schema.get("properties") else []
    for name, prop in (schema.get("properties") or {}).items():
        node = prop.get("items", prop) if prop.get("type") == "array" else prop
        out += schema_objects(node, path + "." + name)
    return out


class AdminViewTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.c = ChartOperatorCluster()
        cls.c.kubectl("create", "namespace", NS)

    @classmethod
    def tearDownClass(cls):
        cls.c.down()

    def k(self, *args, **kwargs):
        return self.c.kubectl(*args, **kwargs)

    def job(self, name):
        return self.c.get_job(name, ns=NS)

    def wait_phase(self, name, phases, timeout=300):
        return self.c.wait_phase(name, phases, timeout=timeout, ns=NS)

    def metrics(self):
        ip = self.c.pod_ip(self.c.leader())
        return urllib.request.urlopen(f"http://{ip}:{self.c.metrics_port}/metrics",
                                      timeout=10).read().decode()

    def processed(self):
        """parallelrun_minibatches_processed_total summed over the operator's replicas (the
        leader counts; a replica that led before keeps what it counted)."""
        total = 0.0
        for pod in self.c.operator_pods():
            ip = self.c.pod_ip(pod["metadata"]["name"])
            text = urllib.request.urlopen(f"http://{ip}:{self.c.metrics_port}/metrics",
                                          timeout=10).read().decode()
            total += float(re.search(r"^parallelrun_minibatches_processed_total (\S+)$", text,
                                     re.MULTILINE).group(1))
        return total

    def events(self, name):
        out = self.k("get", "events", "-n", NS, "--field-selector",
                     "involvedObject.name=" + name, "-o", "json")
        return [e for e in json.loads(out.stdout)["items"]
                if e.get("involvedObject", {}).get("kind") == "ParallelRunJob"]

    def test_explain_describes_every_spec_and_status_field(self):
        crd = json.loads(self.k("get", "crd", "parallelrunjobs.parallelrun.io", "-o",
                                "json").stdout)
        schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]
        paths = schema_objects(schema["spec"], "spec") + schema_objects(schema["status"], "status")
        self.assertIn("status.miniBatches", paths)
        for path in paths:
            out = self.k("explain", "prj." + path).stdout
            # Its own description, then FIELDS: every child with its description.
            description = out.split("DESCRIPTION:", 1)[1].split("FIELDS:", 1)[0].strip()
            # kubectl prints a missing description as "<empty>" (the object's own) or
            # "<no description>" (a field in FIELDS).
            self.assertNotIn(description, ("", "<empty>"),
                             f"kubectl explain prj.{path}: no description")
            self.assertNotIn("<no description>", out, f"kubectl explain prj.{path}:\n{out}")
            for word in DEVELOPER_WORDS:
                self.assertNotIn(word, out, f"kubectl explain prj.{path}: a developer note")

    def test_semantically_invalid_job_is_refused_by_apply_naming_the_field(self):
        manifest = cluster_manifest("typo-ref", "/tmp", score_files_source())
        manifest["metadata"]["namespace"] = NS
        manifest["spec"]["arguments"] = ["--lexicon", "$(sideInputs.lexicn)/words.tsv"]
        for extra in ([], ["--dry-run=server"]):
            out = self.k("apply", *extra, "-f", "-", input=json.dumps(manifest), check=False)
            self.assertNotEqual(out.returncode, 0, out.stdout)
            self.assertIn("denied the request", out.stderr)
            self.assertIn("spec.arguments[1]", out.stderr)
            self.assertIn("lexicn", out.stderr)
        self.assertIsNone(self.job("typo-ref"))

    def check_status(self, status, spec, seen):
        """The rules of docs/operations.md "Reading a job's status", at one status update."""
        where = json.dumps(status, indent=1)
        for key in ("startTime", "completionTime", "estimatedCompletionTime"):
            if key in status:
                self.assertRegex(status[key], TIME, where)
        for c in status.get("conditions", []):
            self.assertRegex(c["lastTransitionTime"], TIME, where)
        for e in status.get("recentErrors", []):
            self.assertRegex(e["lastSeen"], TIME, where)
        for key, value in status.items():
            self.assertNotEqual(value, "", f"status.{key} is empty:\n{where}")
        mb, items = status.get("miniBatches"), status.get("items")
        if mb:
            self.assertLessEqual(mb["failed"], mb["completed"], where)
            self.assertLessEqual(mb["completed"], mb["total"], where)
            self.assertLessEqual(mb["retried"], mb["total"], where)
            self.assertLessEqual(mb["running"],
                                 spec["nodeCount"] * spec["processCountPerNode"], where)
        if items:
            self.assertLessEqual(items["succeeded"] + items["failed"], items["total"], where)
        if "progress" in status:
            if status["progress"] != "planning":
                self.assertEqual(status["progress"], "%d/%d" % (mb["completed"], mb["total"]),
                                 where)
        elif status.get("phase") == "Running":
            self.fail("a Running job with no progress:\n" + where)
        if status.get("nodes", {}).get("ready"):
            seen["ready"] = status["nodes"]["ready"]
        if status.get("phase") in ("Succeeded", "Failed"):
            # The last count observed: the coordinator's at the end, never dropped to 0.
            self.assertGreater(status["nodes"]["ready"], 0, where)
            self.assertLessEqual(status["nodes"]["ready"], spec["nodeCount"], where)
        seen["retried"] = max(seen.get("retried", 0), (mb or {}).get("retried", 0))

    def test_job_with_a_retry_adds_up_records_each_event_once_and_shows_reason(self):
        data = make_claim(self.c.cluster, "scores", ns=NS)
        for part in ("code", "data"):
            shutil.copytree(os.path.join(EXAMPLE, part), os.path.join(data, part))
        manifest = cluster_manifest("scores", data, score_files_source(), claim="scores")
        spec = manifest["spec"]
        processed_before = self.processed()
        watch = self.c.cluster.popen_kubectl("get", "prj", "-n", NS, "-w", "-o", "json")
        try:
            self.c.kubectl("apply", "-n", NS, "-f", "-", input=json.dumps(manifest))
            job = self.wait_phase("scores", ("Succeeded", "Failed"))
        finally:
            watch.terminate()
            streamed, _ = watch.communicate(timeout=30)
        status = job["status"]
        self.assertEqual(status["phase"], "Succeeded", json.dumps(status, indent=1))
        updates = [o["status"] for o in json_stream(streamed)
                   if o["metadata"]["name"] == "scores" and o.get("status")]
        self.assertGreater(len(updates), 2, "the watch saw too few status updates")
        seen = {}
        for update in updates + [status]:
            self.check_status(update, spec, seen)
        self.assertGreater(seen["retried"], 0, "the example retries its flaky document")
        # The flaky documents' first tries are in recentErrors (lastSeen checked above): one
        # error per document, at the raise in the example's score.py, one mini-batch each.
        errors = status.get("recentErrors", [])
        self.assertEqual(len(errors), status["miniBatches"]["retried"], json.dumps(errors))
        for e in errors:
            self.assertRegex(e["error"], r"^RuntimeError: transient failure while reading "
                                         r"doc-\d+-flaky\.txt$")
            self.assertEqual((e["location"], e["count"], e["miniBatches"]), ("score.py:36", 1, 1))
        self.assertEqual(status["reason"], "Completed")
        self.assertEqual(status["output"], {"volume": "data", "path": "output",
                                            "file": "rows.txt"})
        self.assertEqual(status["logs"], {"volume": "data", "path": "output/logs"})
        self.assertNotIn("estimatedCompletionTime", status)

        # Each event once: no two Events alike, transitions with count 1.
        events = self.events("scores")
        keys = [(e["type"], e["reason"], e["message"]) for e in events]
        self.assertEqual(len(keys), len(set(keys)), keys)
        for reason in ("Started", "Succeeded"):
            once = [e for e in events if e["reason"] == reason]
            self.assertEqual([e.get("count", 1) for e in once], [1], (reason, keys))

        # REASON always; MESSAGE with -o wide.
        table = self.k("get", "prj", "-n", NS).stdout.splitlines()
        self.assertEqual(table[0].split(), ["NAME", "PHASE", "PROGRESS", "FAILED", "NODES",
                                            "ETA", "REASON", "AGE"])
        self.assertIn("Completed", table[1].split())
        wide = self.k("get", "prj", "-n", NS, "scores", "-o", "wide").stdout.splitlines()
        self.assertEqual(wide[0].split()[-2:], ["AGE", "MESSAGE"])
        self.assertIn(status["message"].split()[0], wide[1])

        # Metrics: exactly the documented names and types; per-job series with the job.
        text = self.metrics()
        served = {n: t for n, t in served_metrics(text).items() if n.startswith("parallelrun_")}
        self.assertEqual(served, documented_metrics())
        for name, kind in served.items():
            if kind == "counter":
                self.assertTrue(name.endswith("_total"), name)
        self.assertRegex(text, r'parallelrun_job_minibatches\{name="scores",namespace="%s",'
                               r'state="total"\} %d\n' % (NS, status["miniBatches"]["total"]))
        self.assertRegex(text, r"\nparallelrun_reconcile_errors_total 0\n",
                         "healthy jobs made reconcile errors:\n" + self.c.operator_log())
        self.assertNotIn('phase="None"', text)
        # The counter went up by the job's mini-batches, each once (the retried one too).
        self.assertEqual(self.processed() - processed_before, status["miniBatches"]["total"])
        self.k("delete", "prj", "-n", NS, "scores", "--wait=true", timeout=120)
        wait_until(lambda: 'name="scores"' not in self.metrics(), 60,
                   "the job's series to vanish from /metrics")

    def test_second_suspend_counts_on_one_event_and_output_in_use_names_the_owner(self):
        data = make_claim(self.c.cluster, "slow", ns=NS)
        make_slow_data(data, files=240)  # about 20 s of work: time to suspend it mid-run
        manifest = cluster_manifest("slow", data, slow_source(240), node_count=1, processes=1,
                                    claim="slow", extra={"suspend": True})
        self.k("apply", "-n", NS, "-f", "-", input=json.dumps(manifest))
        self.wait_phase("slow", ("Suspended",))
        self.k("patch", "prj", "-n", NS, "slow", "--type=merge", "-p", '{"spec":{"suspend":false}}')
        # Resumed and its coordinator serving (it has taken the output folder).
        wait_until(lambda: "miniBatches" in ((self.job("slow") or {}).get("status") or {}), 240,
                   "the resumed job to report progress")
        self.k("patch", "prj", "-n", NS, "slow", "--type=merge", "-p", '{"spec":{"suspend":true}}')
        self.wait_phase("slow", ("Suspended",))
        suspended = wait_until(lambda: [e for e in self.events("slow")
                                        if e["reason"] == "Suspended" and e.get("count") == 2],
                               60, "the second Suspended to be counted on the first")
        self.assertEqual(len([e for e in self.events("slow") if e["reason"] == "Suspended"]), 1,
                         suspended)

        # Deleted and applied again: the folder belongs to a job that no longer exists.
        self.k("delete", "prj", "-n", NS, "slow", "--wait=true", timeout=120)
        manifest["spec"]["suspend"] = False
        self.k("apply", "-n", NS, "-f", "-", input=json.dumps(manifest))
        job = self.wait_phase("slow", ("Failed", "Succeeded"))
        status = job["status"]
        self.assertEqual(status["reason"], "OutputInUse", json.dumps(status, indent=1))
        for part in ("a deleted job", 'volume "data"', '"output"', "spec.output.path",
                     "delete the folder"):
            self.assertIn(part, status["message"])
        self.assertNotIn("/mnt/output", status["message"])
        wide = self.k("get", "prj", "-n", NS, "slow", "-o", "wide").stdout
        self.assertIn("OutputInUse", wide)
        self.assertIn("a deleted job", wide)


if __name__ == "__main__":
    unittest.main()
