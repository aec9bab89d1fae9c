"""Faults around the standalone roles (issue 4): an agent stopped with SIGTERM gives its leases back
at once and exits 130; a coordinator stopped with SIGTERM exits 130 with its journal on disk and a
new one resumes; agents outlive a coordinator that is killed and restarted on the same address.
The entry script's mini-batches wait while a gate file exists, so each test decides when work
finishes."""
import collections
import json
import os
import signal
import time
import unittest

from jobkit import Cluster, JobTestCase, manifest, read_text, wait_for

# Marks <marks>/<file>.started when run() begins and <file>.done when it returns; waits while
# <root>/gate exists (at most 100 s), unless its file is named in <root>/free.
SCRIPT = """
import os
import time
ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
MARKS = os.path.join(ROOT, "marks")
def mark(paths, what):
    for p in paths:
        open(os.path.join(MARKS, os.path.basename(p) + "." + what), "w").close()
def free(paths):
    try:
        with open(os.path.join(ROOT, "free")) as f:
            names = f.read().split()
    except OSError:
        return False
    return all(os.path.basename(p) in names for p in paths)
def run(mini_batch):
    mark(mini_batch, "started")
    deadline = time.monotonic() + 100
    while (os.path.exists(os.path.join(ROOT, "gate")) and not free(mini_batch)
           and time.monotonic() < deadline):
        time.sleep(0.02)
    mark(mini_batch, "done")
    return [os.path.basename(p) for p in mini_batch]
"""

RUN_TIMEOUT = 120  # lease: runInvocationTimeout + 30 = 150 s


class FaultsTest(JobTestCase):
    def start_job(self, files, nodes):
        self.names = self.make_files(files)
        self.job.write("code/score.py", SCRIPT)
        os.makedirs(os.path.join(self.job.root, "marks"))
        self.gate = self.job.write("gate", "")
        self.job.write_manifest(manifest(miniBatchSize=1, nodeCount=len(nodes),
                                         processCountPerNode=1,
                                         runInvocationTimeout=RUN_TIMEOUT))
        token_file = self.job.write("token", "faults-token\n")
        os.chmod(token_file, 0o600)
        self.cluster = Cluster(self.job, token_file, nodes)
        self.addCleanup(self.cluster.cleanup)
        self.cluster.start_coordinator()

    def marks(self, what):
        return sorted(n[:-len(what) - 1] for n in os.listdir(os.path.join(self.job.root, "marks"))
                      if n.endswith("." + what))

    def journal(self):
        path = os.path.join(self.job.output, ".parallelrun", "journal")
        try:
            return [json.loads(line) for line in read_text(path).splitlines() if line]
        except OSError:
            return []

    def records(self, kind):
        return [r for r in self.journal() if r["t"] == kind]

    def node_log(self, node):
        return read_text(os.path.join(self.job.logs, "sys", "node", node, "_main.txt"))

    def wait_exit(self, p, what, timeout):
        wait_for(what, lambda: p.poll() is not None, timeout)
        return p.returncode

    def rows_by_mini_batch(self):
        rows = collections.defaultdict(list)
        for r in self.job.report_rows():
            rows[int(r["mini_batch_id"])].append(r)
        return rows

    def test_sigterm_on_an_agent_gives_its_leases_back_at_once_and_exits_130(self):
        self.start_job(6, ["127.0.0.1", "127.0.0.2"])
        a = self.cluster.start_agent("127.0.0.1")
        # One process: mini-batch 0 runs, mini-batch 1 waits in the agent's queue.
        wait_for("mini-batch 0 to start", lambda: self.marks("started") == ["f0000.txt"], 60)
        wait_for("two leases", lambda: len(self.records("lease")) >= 2, 60)
        self.assertEqual([r["mb"] for r in self.records("lease")], [0, 1])
        sigterm_at = time.monotonic()
        a.send_signal(signal.SIGTERM)
        wait_for("the agent to see the stop request",
                 lambda: "stop requested" in self.node_log("127.0.0.1"), 30)
        os.remove(self.gate)  # mini-batch 0 finishes within the grace period
        self.assertEqual(self.wait_exit(a, "the agent to exit", 60), 130,
                         self.cluster.log_of(a))
        released = self.records("released")
        self.assertEqual([(r["mb"], r["a"], r["node"]) for r in released],
                         [(1, 1, "127.0.0.1")], self.journal())

        # Another agent runs the rest, mini-batch 1 included, long before its lease would expire.
        b = self.cluster.start_agent("127.0.0.2")
        code = self.wait_exit(self.cluster.coordinator, "the coordinator to finish", 120)
        elapsed = time.monotonic() - sigterm_at
        self.assertEqual(code, 0, self.cluster.log_of(self.cluster.coordinator))
        self.assertLess(elapsed, RUN_TIMEOUT + 30)
        self.assertEqual(self.wait_exit(b, "the second agent to exit", 60), 0)

        rows = self.rows_by_mini_batch()
        self.assertEqual(sorted(rows), list(range(6)))
        for mb, attempts in rows.items():
            self.assertEqual(len(attempts), 1, f"mini-batch {mb}: {attempts}")
            self.assertEqual(attempts[0]["status"], "RUN_DONE", attempts)
            self.assertEqual(attempts[0]["accepted"], "1", attempts)
        self.assertEqual((rows[0][0]["node"], rows[0][0]["attempt"]), ("127.0.0.1", "1"))
        self.assertEqual((rows[1][0]["node"], rows[1][0]["attempt"]), ("127.0.0.2", "2"))
        result = self.job.result()
        self.assertIn("mini_batches_retried: 0\n", result)
        self.assertEqual(self.job.output_lines(), self.names)
        self.assertIn("1 queued lease(s) given back", self.node_log("127.0.0.1"))

    def test_sigterm_on_the_coordinator_exits_130_and_a_new_one_resumes(self):
        self.start_job(4, ["127.0.0.1"])
        self.job.write("free", "f0000.txt f0001.txt\n")  # mini-batches 2 and 3 wait on the gate
        a = self.cluster.start_agent("127.0.0.1")
        wait_for("mini-batch 2 to start", lambda: "f0002.txt" in self.marks("started"), 60)
        wait_for("two accepted results", lambda: sum(
            1 for r in self.records("result") if r["outcome"] == "completed") == 2, 60)
        first = self.cluster.coordinator
        first.send_signal(signal.SIGTERM)
        self.assertEqual(self.wait_exit(first, "the coordinator to exit", 60), 130,
                         self.cluster.log_of(first))
        completed = sorted(r["mb"] for r in self.records("result") if r["outcome"] == "completed")
        self.assertEqual(completed, [0, 1])
        self.assertFalse(os.path.exists(os.path.join(self.job.output, ".parallelrun",
                                                     "result.json")))
        # The agent heard `stop` (it exits 0) or finds the coordinator gone (it waits for a new
        # one): either way the same agent or a fresh one finishes the job with the new one.
        wait_for("the agent to exit or to miss the coordinator", lambda: a.poll() is not None
                 or "coordinator unreachable" in self.node_log("127.0.0.1"), 60)
        os.remove(self.gate)
        self.cluster.start_coordinator(self.cluster.same_address())
        if a.poll() is not None:
            self.assertEqual(a.returncode, 0, self.cluster.log_of(a))
            a = self.cluster.start_agent("127.0.0.1")
        code = self.wait_exit(self.cluster.coordinator, "the new coordinator to finish", 120)
        self.assertEqual(code, 0, self.cluster.log_of(self.cluster.coordinator))
        rows = self.rows_by_mini_batch()
        for mb in (0, 1):
            self.assertEqual(len(rows[mb]), 1, rows[mb])  # not run again
        self.assertEqual(self.job.output_lines(), self.names)
        overview = "".join(read_text(p) for p in sorted(
            os.path.join(self.job.logs, n) for n in os.listdir(self.job.logs)
            if n.startswith("job_progress_overview")))
        self.assertIn("Interrupted", overview)
        self.assertIn("resuming job itest: 2 of 4 mini batches already processed", overview)

    def test_agents_outlive_a_coordinator_restart_and_keep_their_work(self):
        nodes = ["127.0.0.1", "127.0.0.2"]
        self.start_job(6, nodes)
        agents = {node: self.cluster.start_agent(node) for node in nodes}
        pids = {node: p.pid for node, p in agents.items()}
        # Each agent runs one mini-batch and has one queued (2 per process).
        wait_for("two mini-batches to start", lambda: len(self.marks("started")) == 2, 60)
        wait_for("four leases", lambda: len(self.records("lease")) >= 4, 60)
        self.cluster.kill(self.cluster.coordinator)
        # While the coordinator is away the agents finish what they had, queued work included.
        os.remove(self.gate)
        wait_for("four mini-batches done", lambda: len(self.marks("done")) == 4, 60)
        self.cluster.start_coordinator(self.cluster.same_address())
        code = self.wait_exit(self.cluster.coordinator, "the new coordinator to finish", 120)
        self.assertEqual(code, 0, self.cluster.log_of(self.cluster.coordinator))
        for node in nodes:
            self.assertEqual(self.wait_exit(agents[node], f"agent {node} to exit", 60), 0,
                             self.cluster.log_of(agents[node]))
            self.assertEqual(agents[node].pid, pids[node])
            log = self.node_log(node)
            self.assertIn("coordinator unreachable", log)
            self.assertIn("registered again with", log)

        # Nothing ran twice, nothing was cancelled or expired, and each node kept its one worker.
        rows = self.rows_by_mini_batch()
        self.assertEqual(sorted(rows), list(range(6)))
        for mb, attempts in rows.items():
            self.assertEqual(len(attempts), 1, f"mini-batch {mb}: {attempts}")
            r = attempts[0]
            self.assertEqual((r["attempt"], r["status"], r["accepted"]), ("1", "RUN_DONE", "1"), r)
            self.assertEqual(r["process"], "process000", r)
        self.assertEqual(self.job.output_lines(), self.names)
        master = read_text(os.path.join(self.job.logs, "sys", "master_role.2.txt"))
        self.assertIn("4 mini-batches were running when the previous coordinator ended", master)
        self.assertIn("it still holds 2 of the mini-batches it had before the restart", master)
        self.assertIn("mini_batches_retried: 0\n", self.job.result())


if __name__ == "__main__":
    unittest.main()
