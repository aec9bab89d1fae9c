"""Chaos test (issue 4, "Proof"): a standalone `parallelrun coordinator` and three `parallelrun
agent` processes, as in a cluster, run a job of 2,000 mini-batches while random workers, agents
and the coordinator itself are SIGKILLed and restarted. Afterwards every succeeded item is in the
output exactly once, in plan order, no mini-batch is accepted twice, and the report CSV and
job_result.txt agree with the output. Seeded; the seed is printed."""
import collections
import csv
import os
import random
import signal
import subprocess
import sys
import time
import unittest

from jobkit import BIN, PYTHON, JobTestCase, manifest

FILES = 2000
NODES = ["127.0.0.1", "127.0.0.2", "127.0.0.3"]
KILLS = ["worker", "worker", "agent", "agent", "coordinator"]  # plus one drawn at random

SCRIPT = """
import os
import random
import time
def run(mini_batch):
    time.sleep(random.random() * 0.004)
    return [os.path.basename(p) for p in mini_batch]
"""


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
    """The coordinator and agents of one job, started as separate processes; remembers them all
    so that cleanup() can SIGKILL and reap every one."""

    def __init__(self, job, token_file):
        self.job = job
        self.token_file = token_file
        self.coordinator = None
        self.agents = {}
        self.all = []
        self.url = None
        self.incarnation = 0

    def _spawn(self, args, name, env=None):
        log = open(os.path.join(self.job.root, f"{name}.{len(self.all)}.log"), "w")
        p = subprocess.Popen(args, cwd=self.job.root, stdout=log, stderr=subprocess.STDOUT,
                             env=env, start_new_session=True)
        log.close()
        self.all.append(p)
        return p

    def start_coordinator(self):
        self.incarnation += 1
        address_file = os.path.join(self.job.root, f"address.{self.incarnation}")
        self.coordinator = self._spawn(
            [BIN, "coordinator", "--spec", os.path.join(self.job.root, "job.yaml"),
             "--listen", "127.0.0.1:0", "--token-file", self.token_file,
             "--address-file", address_file, "--paths", "local",
             "--manifest-dir", self.job.root, "--nodes", str(len(NODES)), "--no-echo"],
            "coordinator")

        def address():
            if self.coordinator.poll() is not None:
                raise AssertionError(f"coordinator exited {self.coordinator.returncode} at start")
            try:
                with open(address_file) as f:
                    return f.read().strip()
            except OSError:
                return None

        self.url = wait_for("the coordinator's address file", address, 60)

    def start_agent(self, node):
        env = dict(os.environ, PARALLELRUN_PYTHON=PYTHON)
        self.agents[node] = self._spawn(
            [BIN, "agent", "--coordinator", self.url, "--token-file", self.token_file,
             "--node-name", node], "agent-" + node, env)

    def kill(self, p):
        p.send_signal(signal.SIGKILL)
        p.wait()

    def cleanup(self):
        for p in self.all:
            if p.poll() is None:
                p.send_signal(signal.SIGKILL)
            p.wait()


class ChaosTest(JobTestCase):
    def report_row_count(self):
        path = os.path.join(self.job.logs, "sys", "job_report", "processed_mini-batches.csv")
        try:
            with open(path) as f:
                return max(sum(1 for _ in f) - 1, 0)
        except OSError:
            return 0

    def run_chaos(self, seed):
        print(f"\nchaos seed {seed}", file=sys.stderr, flush=True)
        rng = random.Random(seed)
        names = self.make_files(FILES)
        self.job.write("code/score.py", SCRIPT)
        self.job.write_manifest(manifest(miniBatchSize=1, nodeCount=len(NODES),
                                         processCountPerNode=2, runInvocationTimeout=5,
                                         runMaxTry=5))
        token_file = self.job.write("token", f"chaos-token-{seed}\n")
        os.chmod(token_file, 0o600)

        kills = KILLS + [rng.choice(["worker", "agent", "coordinator"])]
        rng.shuffle(kills)
        # Kill points spread over the first ~60 % of the job, as report CSV rows seen.
        points = sorted(rng.sample(range(100, int(FILES * 0.6)), len(kills)))
        cluster = Cluster(self.job, token_file)
        started = time.monotonic()
        log = []
        try:
            cluster.start_coordinator()
            for node in NODES:
                cluster.start_agent(node)
            for kind, point in zip(kills, points):
                if cluster.coordinator.poll() is not None:
                    break
                wait_for(f"{point} report rows before killing a {kind}",
                         lambda: self.report_row_count() >= point
                         or cluster.coordinator.poll() is not None, 150)
                if cluster.coordinator.poll() is not None:
                    break
                if kind == "worker":
                    node = rng.choice(NODES)
                    pids = wait_for(f"a worker of agent {node}",
                                    lambda: children_running(cluster.agents[node].pid,
                                                             "parallelrun_host"), 60)
                    victim = rng.choice(sorted(pids))
                    os.kill(victim, signal.SIGKILL)
                    log.append(f"worker {victim} of {node}")
                elif kind == "agent":
                    node = rng.choice(NODES)
                    cluster.kill(cluster.agents[node])
                    cluster.start_agent(node)
                    log.append(f"agent {node}")
                else:
                    cluster.kill(cluster.coordinator)
                    # Agents would give up on the lost coordinator after a while; they need the
                    # new URL anyway.
                    for node in NODES:
                        cluster.kill(cluster.agents[node])
                    cluster.start_coordinator()
                    for node in NODES:
                        cluster.start_agent(node)
                    log.append("coordinator")
                print(f"  at {point} rows ({time.monotonic() - started:.1f} s): killed {log[-1]}",
                      file=sys.stderr, flush=True)
            wait_for("the coordinator to finish", lambda: cluster.coordinator.poll() is not None,
                     240)
            code = cluster.coordinator.returncode
            for node in NODES:
                wait_for(f"agent {node} to exit", lambda: cluster.agents[node].poll() is not None,
                         60)
        finally:
            cluster.cleanup()
        print(f"  finished in {time.monotonic() - started:.1f} s after {len(log)} kills",
              file=sys.stderr, flush=True)
        self.assertEqual(code, 0, f"seed {seed}: coordinator exit {code}; kills: {log}\n"
                         + self.job.read(f"coordinator.{cluster.all.index(cluster.coordinator)}.log"))
        self.assertGreaterEqual(len(log), 3, f"seed {seed}: the job ended before the kills: {log}")

        rows = self.job.report_rows()
        accepted = collections.Counter(int(r["mini_batch_id"]) for r in rows if r["accepted"] == "1")
        twice = {mb: n for mb, n in accepted.items() if n > 1}
        self.assertEqual(twice, {}, f"seed {seed}: mini-batches accepted more than once")
        for r in rows:
            if r["accepted"] == "1":
                self.assertEqual(r["status"], "RUN_DONE", r)
        # miniBatchSize 1: mini-batch i is file i in plan order.
        expected = [names[mb] for mb in sorted(accepted)]
        output = self.job.output_lines()
        self.assertEqual(len(output), len(set(output)), f"seed {seed}: duplicated output rows")
        self.assertEqual(output, expected, f"seed {seed}: output differs from accepted mini-batches")

        result = self.job.result()
        self.assertEqual(result.splitlines()[0], "Succeeded", result)
        fields = dict(line.split(": ", 1) for line in result.splitlines()[1:] if ": " in line)
        self.assertEqual(int(fields["items_succeeded"]), len(output), result)
        self.assertEqual(int(fields["mini_batches_succeeded"]), len(accepted), result)
        failed = int(fields["mini_batches_failed"])
        self.assertEqual(len(accepted) + failed, FILES, result)
        self.assertEqual(int(fields.get("items_failed", "0")), failed, result)

    # PARALLELRUN_CHAOS_SEED replays one seed in both methods (e.g. one printed by a failure).
    def test_seed_1(self):
        self.run_chaos(int(os.environ.get("PARALLELRUN_CHAOS_SEED", "1")))

    def test_seed_2(self):
        self.run_chaos(int(os.environ.get("PARALLELRUN_CHAOS_SEED", "2")))


if __name__ == "__main__":
    unittest.main()
