"""Why did my job fail? (issue 15): the user's error reaches kubectl.

One job on a test cluster with the operator installed by the chart (real helm, real kubectl, as
test_operator_e2e): a script whose run() raises `ValueError("model returned NaN; ...")` on every
mini-batch (tests/operator/testdata/nan-model). Checked:
- while it runs, status.recentErrors names the error and its file:line (score.py:14);
- once Failed, status.message, the Failed condition and `kubectl get prj -o jsonpath` name the
  most frequent error with its file:line and how many mini-batches and items it hit;
- `kubectl logs` of every worker pod (all kept after the end) shows the node's user stdout and
  one line per failed attempt with the traceback; the coordinator's log one line per failed
  mini-batch;
- every ```sh tested on-failed-job block of docs/why-did-my-job-fail.md runs against this job,
  and together they show the exception text, score.py:14 and the traceback.

Environment (set by CTest): PARALLELRUN_BIN, OPERATOR_BIN, TESTCLUSTER_BIN; helm from PATH;
PARALLELRUN_TEST_RUNTIME / PARALLELRUN_TEST_IMAGE as for test_operator_e2e.
"""

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, HERE)
from test_operator_e2e import (ChartOperatorCluster, apply, cluster_manifest,  # noqa: E402
                               make_claim)

JOB = "nan-model"
CLAIM = "nan-model-data"
CODE = os.path.join(HERE, "testdata", "nan-model", "code")
DOC = os.path.join(ROOT, "docs", "why-did-my-job-fail.md")
FILES = 12  # one per mini-batch, one try each: 12 failed mini-batches, 12 failed items
ERROR = "ValueError: model returned NaN; check the model file and the input encoding"
LOCATION = "score.py:14"


def doc_blocks():
    """The ```sh tested on-failed-job blocks of the page, in order: [(line, body)]."""
    with open(DOC) as f:
        text = f.read()
    out = []
    for m in re.finditer(r"^```sh tested on-failed-job\n(.*?)^```", text, re.S | re.M):
        out.append((text.count("\n", 0, m.start()) + 1, m.group(1)))
    return out


class WhyFailedTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        started = time.monotonic()
        cls.c = ChartOperatorCluster()
        try:
            data = make_claim(cls.c.cluster, CLAIM)
            shutil.copytree(CODE, os.path.join(data, "code"))
            os.makedirs(os.path.join(data, "documents"))
            for i in range(FILES):
                with open(os.path.join(data, "documents", "d%02d.txt" % i), "w") as f:
                    f.write("text %d\n" % i)
            source = {"entryScript": "score.py", "input": "documents/", "miniBatchSize": "1",
                      "spec": {"errorThreshold": -1, "runMaxTry": 1}}
            cls.manifest = cluster_manifest(JOB, data, source, node_count=2, processes=1,
                                            claim=CLAIM)
            # Every status the job goes through, read as often as kubectl can.
            cls.statuses = []
            stop = threading.Event()

            def poll():
                while not stop.is_set():
                    job = cls.c.get_job(JOB)
                    if job and job.get("status"):
                        cls.statuses.append(job["status"])
                        if job["status"].get("phase") in ("Succeeded", "Failed"):
                            return
                    time.sleep(0.2)
            poller = threading.Thread(target=poll, daemon=True)
            poller.start()
            apply(cls.c, cls.manifest)
            cls.job = cls.c.wait_phase(JOB, ("Succeeded", "Failed"), timeout=300)
            stop.set()
            poller.join(timeout=60)
            if cls.statuses[-1:] != [cls.job["status"]]:
                cls.statuses.append(cls.job["status"])  # the poller may have stopped before it
            # Worker pods are kept: wait until both have ended on their own.
            def workers_ended():
                pods = json.loads(cls.c.kubectl("get", "pods", "-l", "parallelrun.io/job=" + JOB,
                                                "-o", "json").stdout)["items"]
                phases = {p["metadata"]["name"]: p["status"].get("phase") for p in pods}
                ok = all(phases.get(f"{JOB}-worker-{i}") in ("Succeeded", "Failed")
                         for i in range(2))
                return phases if ok else None
            cls.pod_phases = cls.c_wait(workers_ended, 150, "both worker pods to end")
        except Exception:
            cls.c.down()
            raise
        print(f"\nsetUpClass: {time.monotonic() - started:.1f} s", file=sys.stderr)

    @classmethod
    def c_wait(cls, predicate, timeout, what):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = predicate()
            if value:
                return value
            time.sleep(0.5)
        raise AssertionError("timed out waiting for " + what)

    @classmethod
    def tearDownClass(cls):
        cls.c.down()

    def test_recent_errors_while_running(self):
        running = [s for s in self.statuses
                   if s.get("phase") == "Running" and s.get("recentErrors")]
        self.assertTrue(running, "no status of the running job had recentErrors; phases seen: %s"
                        % sorted({s.get("phase") for s in self.statuses}))
        first = running[0]["recentErrors"]
        self.assertLessEqual(len(first), 5)
        self.assertEqual(first[0]["error"], ERROR)
        self.assertEqual(first[0]["location"], LOCATION)
        self.assertGreaterEqual(first[0]["count"], 1)
        # RFC 3339 at second precision, as every time in the status.
        self.assertRegex(first[0]["lastSeen"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
        # The count only grows while the job runs, up to one per mini-batch.
        seen = [(s.get("phase"), [(e["count"], e["error"][:40]) for e in s.get("recentErrors", [])])
                for s in self.statuses]
        counts = [s["recentErrors"][0]["count"] for s in self.statuses if s.get("recentErrors")]
        self.assertEqual(counts, sorted(counts), seen)
        self.assertEqual(counts[-1], FILES, seen)

    def test_failed_job_names_the_error_its_place_and_its_reach(self):
        status = self.job["status"]
        self.assertEqual(status["phase"], "Failed", json.dumps(status, indent=1))
        expected = f"most frequent error: {ERROR} at {LOCATION} ({FILES} failed attempts, " \
                   f"{FILES} mini-batches, {FILES} items)"
        self.assertIn(expected, status["message"])
        failed = [c for c in status["conditions"] if c["type"] == "Failed"]
        self.assertEqual(len(failed), 1)
        self.assertEqual(failed[0]["status"], "True")
        self.assertIn(expected, failed[0]["message"])
        self.assertEqual(status["recentErrors"], [dict(status["recentErrors"][0], error=ERROR,
                                                       location=LOCATION, count=FILES,
                                                       miniBatches=FILES, items=FILES)])
        out = self.c.kubectl("get", "prj", JOB, "-o", "jsonpath={.status.message}").stdout
        self.assertIn(expected, out)
        described = self.c.kubectl("describe", "prj", JOB).stdout
        self.assertIn(ERROR, described)

    def test_wide_output_shows_the_reason_and_the_message(self):
        wide = self.c.kubectl("get", "prj", JOB, "-o", "wide").stdout.splitlines()
        self.assertEqual(wide[0].split()[-3:], ["REASON", "AGE", "MESSAGE"])
        self.assertIn("NoSucceededItems", wide[1].split())
        self.assertIn(ERROR, wide[1])

    def test_each_event_once(self):
        out = self.c.kubectl("get", "events", "--field-selector", "involvedObject.name=" + JOB,
                             "-o", "json")
        events = [(e["type"], e["reason"], e.get("count", 1), e["message"])
                  for e in json.loads(out.stdout)["items"]
                  if e["involvedObject"].get("kind") == "ParallelRunJob"]
        keys = [(e[0], e[1], e[3]) for e in events]
        self.assertEqual(len(keys), len(set(keys)), events)  # no event written twice
        self.assertEqual([e[2] for e in events if e[1] == "Started"], [1], events)
        failed = [e for e in events if e[1] in ("ThresholdExceeded", "Failed")]
        self.assertEqual(len(failed), 1, events)
        self.assertEqual(failed[0][:3], ("Warning", "ThresholdExceeded", 1), events)
        self.assertIn(ERROR, failed[0][3])  # the user's error in the event, too

    def test_worker_pods_are_kept_and_their_logs_show_output_and_failures(self):
        self.assertEqual(sorted(self.pod_phases), [f"{JOB}-coordinator", f"{JOB}-worker-0",
                                                   f"{JOB}-worker-1"])
        failed_lines = 0
        for i in range(2):
            logs = self.c.kubectl("logs", f"{JOB}-worker-{i}").stdout  # kept: readable
            mine = re.findall(r"^mini-batch \d+ attempt 1 failed \(process000\): RUN_EXCEPTION: "
                              + re.escape(ERROR), logs, re.M)
            failed_lines += len(mine)
            if mine:  # a node that ran work (a late one may have found none left)
                self.assertIn("[process000 stdout] model loaded", logs)
                self.assertIn("[process000 stdout] scoring 1 file(s)", logs)
                self.assertIn("Traceback (most recent call last):", logs)
                self.assertRegex(logs, r'score\.py", line 14, in predict')
        self.assertEqual(failed_lines, FILES)

    def test_coordinator_log_has_a_line_per_failed_mini_batch(self):
        logs = self.c.kubectl("logs", f"{JOB}-coordinator").stdout
        lines = re.findall(r"mini-batch (\d+) attempt 1 on \S+ process000: RUN_EXCEPTION: "
                           + re.escape(ERROR), logs)
        self.assertEqual(sorted(int(x) for x in lines), list(range(FILES)), logs[-3000:])

    def test_the_docs_page_commands_run_and_reach_the_traceback(self):
        blocks = doc_blocks()
        self.assertGreaterEqual(len(blocks), 3, "no ```sh tested on-failed-job blocks in " + DOC)
        work = tempfile.mkdtemp(prefix="why-failed-doc-", dir=self.c.dir)
        env = dict(os.environ, KUBECONFIG=self.c.cluster.kubeconfig, HOME=work)
        seen = ""
        for line, body in blocks:
            out = subprocess.run(["bash", "-euo", "pipefail", "-c", body], cwd=work, env=env,
                                 capture_output=True, text=True, timeout=120)
            self.assertEqual(out.returncode, 0, f"docs/why-did-my-job-fail.md:{line}: block "
                                                f"failed:\n{body}\n{out.stdout}{out.stderr}")
            seen += out.stdout
        self.assertIn(JOB, seen.splitlines()[1] if len(seen.splitlines()) > 1 else "")
        for needle in (ERROR, LOCATION, "Traceback (most recent call last):",
                       'score.py", line 14, in predict'):
            self.assertIn(needle, seen)


if __name__ == "__main__":
    unittest.main()
