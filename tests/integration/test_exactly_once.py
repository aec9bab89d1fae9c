"""Exactly-once, proven at the end (issue 12): one run per output folder, accepted part files
verified at assembly, inputs fingerprinted at planning, and folders that must not overlap.

Every mid-run action is made deterministic by entry scripts that hold chosen items until the test
creates a gate file, and by waiting on the journal, never on sleeps."""
import json
import os
import shutil
import signal
import subprocess
import sys
import unittest

from jobkit import BIN, JobTestCase, Job, manifest, read_text, wait_for

HERE = os.path.dirname(os.path.abspath(__file__))
HOST_DIR = os.path.join(HERE, "..", "..", "runtime", "hosts", "python")

# Items numbered HOLD_FROM and up wait for the gate file before run() returns them.
GATED_FILES = """
import os, time
GATE = {gate!r}
HOLD_FROM = {hold_from}
def run(mini_batch):
    out = []
    for p in mini_batch:
        name = os.path.basename(p)
        if int(name[1:5]) >= HOLD_FROM:
            deadline = time.time() + 240
            while not os.path.exists(GATE) and time.time() < deadline:
                time.sleep(0.02)
        out.append(name)
    return out
"""

# Every mini-batch waits for the gate after its rows were read.
GATED_TABLE = """
import os, time
GATE = {gate!r}
def run(mini_batch):
    deadline = time.time() + 240
    while not os.path.exists(GATE) and time.time() < deadline:
        time.sleep(0.02)
    return mini_batch
"""


def journal_records(job):
    path = os.path.join(job.output, ".parallelrun", "journal")
    try:
        text = read_text(path)
    except OSError:
        return []
    records = []
    for line in text.splitlines():
        try:
            records.append(json.loads(line))
        except ValueError:
            pass  # a line being written
    return records


def completed(job):
    return [r for r in journal_records(job)
            if r.get("t") == "result" and r.get("outcome") == "completed"]


class ExactlyOnceTest(JobTestCase):
    def setUp(self):
        super().setUp()
        self.gate = os.path.join(self.tmp, "gate")
        self.procs = []

        def kill_all():
            for p in self.procs:
                if p.poll() is None:
                    os.killpg(p.pid, signal.SIGKILL)
                    p.wait()
        self.addCleanup(kill_all)

    def start_run(self):
        p = subprocess.Popen([BIN, "run", os.path.join(self.tmp, "job.yaml")], cwd=self.tmp,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             start_new_session=True)
        self.procs.append(p)
        return p

    def finish(self, p, timeout=240):
        out, err = p.communicate(timeout=timeout)
        return subprocess.CompletedProcess(p.args, p.returncode, out, err)

    def open_gate(self):
        with open(self.gate, "w"):
            pass

    def gated_file_job(self, files, batch, hold_from, **spec):
        self.make_files(files)
        self.job.write("code/score.py", GATED_FILES.format(gate=self.gate, hold_from=hold_from))
        self.job.write_manifest(manifest(miniBatchSize=batch, **spec))

    # ---- one run per output folder ----

    def test_a_second_run_on_the_same_output_is_refused_and_the_first_finishes(self):
        self.gated_file_job(30, 5, hold_from=0)
        first = self.start_run()
        wait_for("the first run's journal", lambda: any(
            r.get("t") == "lease" for r in journal_records(self.job)), 120)

        second = self.job.run(timeout=120)
        self.assertExit(second, 1)
        self.assertIn("is in use by another run", second.stderr)
        self.assertIn("pid ", second.stderr)
        self.assertIn(" host ", second.stderr)

        # The same through a standalone coordinator (as in a cluster): its own lock refuses it.
        token = self.job.write("token", "t" * 32 + "\n")
        coordinator = subprocess.run(
            [BIN, "coordinator", "--spec", os.path.join(self.tmp, "job.yaml"), "--listen",
             "127.0.0.1:0", "--token-file", token, "--paths", "local", "--manifest-dir",
             self.tmp, "--no-echo"], cwd=self.tmp, capture_output=True, text=True, timeout=120)
        self.assertExit(coordinator, 1)
        self.assertIn("OutputInUse", coordinator.stderr)
        self.assertIn("is in use by another run (pid ", coordinator.stderr)
        # Neither left a trace: one coordinator started on this output.
        starts = [r for r in journal_records(self.job) if r.get("t") == "start"]
        self.assertEqual(len(starts), 1, starts)
        self.assertFalse(os.path.exists(os.path.join(self.job.logs, "sys", "master_role.2.txt")))

        self.open_gate()
        done = self.finish(first)
        self.assertExit(done, 0)
        self.assertEqual(sorted(self.job.output_lines()), [f"f{i:04d}.txt" for i in range(30)])

    def test_a_killed_run_leaves_no_stale_lock(self):
        self.gated_file_job(20, 5, hold_from=10)
        first = self.start_run()
        wait_for("2 completed mini-batches", lambda: len(completed(self.job)) >= 2, 120)
        os.killpg(first.pid, signal.SIGKILL)  # the run, its coordinator and agents: no cleanup
        first.wait()
        self.open_gate()
        again = self.job.run(timeout=240)
        self.assertExit(again, 0)
        starts = [r for r in journal_records(self.job) if r.get("t") == "start"]
        self.assertEqual(len(starts), 2, starts)  # the second run resumed the first one's journal
        self.assertEqual(sorted(self.job.output_lines()), [f"f{i:04d}.txt" for i in range(20)])

    # ---- accepted parts are verified ----

    def test_part_files_deleted_mid_run_fail_the_job_naming_them(self):
        self.gated_file_job(20, 2, hold_from=10)
        run = self.start_run()
        wait_for("5 completed mini-batches", lambda: len(completed(self.job)) >= 5, 120)
        parts = os.path.join(self.job.output, ".parallelrun", "parts")
        deleted = sorted(os.listdir(parts))
        self.assertTrue(deleted)
        for name in deleted:
            os.unlink(os.path.join(parts, name))
        self.open_gate()
        done = self.finish(run)
        self.assertExit(done, 42)
        result = self.job.result()
        self.assertFalse(result.startswith("Succeeded"), result)
        self.assertIn("OutputAssemblyFailed", result)
        self.assertIn(os.path.join(".parallelrun", "parts", deleted[0]), result)
        self.assertIn("retryFrom: " + self.job.output, result)
        self.assertFalse(os.path.exists(os.path.join(self.job.output, "parallel_run_step.txt")))

        # The way on that the message gives: a retry reruns only the mini-batches whose parts
        # were lost, and every row is there exactly once.
        self.job.write_manifest(manifest(miniBatchSize=2, output={"path": "output2/"},
                                         retryFrom="output/"), rel="retry.yaml")
        retry = self.job.run(manifest_rel="retry.yaml", timeout=240)
        self.assertExit(retry, 0)
        self.assertEqual(sorted(self.job.read("output2/parallel_run_step.txt").splitlines()),
                         [f"f{i:04d}.txt" for i in range(20)])
        retried = read_text(os.path.join(self.tmp, "output2", "logs", "job_result.txt"))
        self.assertIn(f"mini_batches_carried_over: {10 - len(deleted)}\n", retried)

    def test_part_file_rewritten_mid_run_fails_the_job_naming_it(self):
        self.gated_file_job(20, 2, hold_from=10)
        run = self.start_run()
        wait_for("5 completed mini-batches", lambda: len(completed(self.job)) >= 5, 120)
        parts = os.path.join(self.job.output, ".parallelrun", "parts")
        victim = os.path.join(parts, sorted(os.listdir(parts))[0])
        with open(victim, "r+") as f:  # same size, other bytes: only the checksum tells
            text = f.read()
            f.seek(0)
            f.write(text.replace("f", "g"))
        self.open_gate()
        done = self.finish(run)
        self.assertExit(done, 42)
        result = self.job.result()
        self.assertIn("OutputAssemblyFailed", result)
        self.assertIn(victim, result)
        self.assertIn("CRC-32", result)

    def test_output_folder_deleted_mid_run_fails_clearly(self):
        self.gated_file_job(20, 2, hold_from=10)
        run = self.start_run()
        wait_for("5 completed mini-batches", lambda: len(completed(self.job)) >= 5, 120)
        # Moved away first (one atomic step), so that the coordinator cannot race the removal.
        os.rename(self.job.output, self.job.output + ".gone")
        shutil.rmtree(self.job.output + ".gone")
        self.open_gate()
        done = self.finish(run)
        self.assertNotEqual(done.returncode, 0, done.stdout + done.stderr)
        text = done.stdout + done.stderr
        self.assertIn("OutputLost", text)
        self.assertIn(self.job.output, text)
        self.assertFalse(os.path.exists(os.path.join(self.job.output, "parallel_run_step.txt")))
        self.assertIn("OutputLost", self.job.result())  # logs/ made again to say why

    # ---- inputs fingerprinted at planning ----

    def test_input_truncated_after_planning_fails_its_mini_batches_naming_the_file(self):
        rows = ["id,text"] + [f"{i},row number {i}" for i in range(3000)]
        table = self.job.write("data/table.csv", "\n".join(rows) + "\n")
        self.job.write("code/score.py", GATED_TABLE.format(gate=self.gate))
        self.job.write_manifest(manifest(
            inputs=[{"name": "t", "type": "tabular", "source": {"path": "data/"}}],
            miniBatchSize="4KB", runMaxTry=1, processCountPerNode=1, allowedFailedPercent=0))
        run = self.start_run()
        plan = os.path.join(self.job.output, ".parallelrun", "plan")
        wait_for("the complete plan", lambda: os.path.exists(plan) and
                 read_text(plan).endswith("END\n"), 120)
        wait_for("a lease", lambda: any(r.get("t") == "lease" for r in journal_records(self.job)),
                 120)
        with open(table, "r+") as f:
            f.truncate(os.path.getsize(table) // 2)
        self.open_gate()
        done = self.finish(run)
        self.assertExit(done, 42)
        result = self.job.result()
        self.assertFalse(result.startswith("Succeeded"), result)
        errors = read_text(os.path.join(self.job.logs, "user", "error.txt"))
        self.assertIn(table + " changed since the job was planned", errors)
        self.assertIn("bytes, modified", errors)
        # Every row is accounted for: in the output, or counted as a failed item.
        accepted = [r for r in self.job.report_rows() if r["accepted"] == "1"]
        self.assertEqual(sum(int(r["total"]) for r in accepted), 3000)
        self.assertEqual(sum(int(r["succeeded"]) for r in accepted), len(self.job.output_lines()))
        self.assertGreater(sum(int(r["failed"]) for r in accepted), 0)

    def test_input_files_changed_after_planning_fail_their_mini_batches_naming_them(self):
        # Item 0 holds the only worker until the gate opens; by then the plan is complete.
        self.gated_file_job(6, 1, hold_from=0, runMaxTry=1, processCountPerNode=1,
                            allowedFailedPercent=100)
        run = self.start_run()
        plan = os.path.join(self.job.output, ".parallelrun", "plan")
        wait_for("the complete plan", lambda: os.path.exists(plan) and
                 read_text(plan).endswith("END\n"), 120)
        wait_for("a lease", lambda: any(r.get("t") == "lease" for r in journal_records(self.job)),
                 120)
        data = os.path.join(self.job.root, "data")
        rewritten = self.job.write("data/f0003.txt", "item 3, rewritten after planning\n")
        removed = os.path.join(data, "f0004.txt")
        os.unlink(removed)
        self.open_gate()
        done = self.finish(run)
        self.assertExit(done, 0)  # allowedFailedPercent 100: two failed mini-batches are allowed
        errors = read_text(os.path.join(self.job.logs, "user", "error.txt"))
        self.assertIn("input file(s) changed since the job was planned: " + rewritten, errors)
        self.assertIn("when planned; now 33 bytes", errors)
        self.assertIn(removed + " (cannot be read now: No such file or directory)", errors)
        accepted = {int(r["mini_batch_id"]): r for r in self.job.report_rows()
                    if r["accepted"] == "1"}
        self.assertEqual(sorted(m for m, r in accepted.items() if r["status"] != "RUN_DONE"),
                         [3, 4])
        self.assertEqual(self.job.output_lines(),
                         ["f0000.txt", "f0001.txt", "f0002.txt", "f0005.txt"])

    def test_python_host_refuses_a_short_read(self):
        sys.path.insert(0, HOST_DIR)
        self.addCleanup(sys.path.remove, HOST_DIR)
        import parallelrun_host
        table = self.job.write("data/t.csv", "id,text\n1,a\n2,b\n")
        host = parallelrun_host.Host({"PARALLELRUN_CONTROL_IN_FD": "0",
                                      "PARALLELRUN_CONTROL_OUT_FD": "1",
                                      "PARALLELRUN_ENTRY_SCRIPT": "x.py",
                                      "PARALLELRUN_INPUT_TYPE": "tabular"})
        whole = host.read_table({"file": table, "header_end": 8, "begin": 8, "end": 16})
        self.assertEqual(len(whole), 2)
        with self.assertRaises(OSError) as cm:
            host.read_table({"file": table, "header_end": 8, "begin": 8, "end": 400})
        self.assertIn(table + " is shorter than when the job was planned", str(cm.exception))

    # ---- folders apart ----

    def test_overlapping_folders_are_refused_naming_both_fields(self):
        self.make_files(3)
        self.job.write("code/score.py", "def run(b):\n    return b\n")
        cases = [
            ({"output": {"path": "data/out/"}}, ["spec.output", "spec.inputs[0].source"]),
            ({"output": {"path": "code"}}, ["spec.output", "spec.sourceDirectory"]),
            ({"sourceDirectory": {"path": "."}}, ["spec.sourceDirectory",
                                                  "spec.inputs[0].source"]),
        ]
        for spec, fields in cases:
            with self.subTest(spec=spec):
                self.job.write_manifest(manifest(**spec))
                for command in ("validate", "run"):
                    proc = self.job.run(command=command, timeout=120)
                    self.assertExit(proc, 1)
                    for field in fields:
                        self.assertIn(field, proc.stderr)
                self.assertFalse(os.path.exists(os.path.join(self.tmp, "data", "out")))

    def test_output_reaching_an_input_through_a_symlink_is_refused(self):
        self.make_files(3)
        self.job.write("code/score.py", "def run(b):\n    return b\n")
        os.symlink(os.path.join(self.tmp, "data"), os.path.join(self.tmp, "link"))
        self.job.write_manifest(manifest(output={"path": "link/out/"}))
        self.assertExit(self.job.run(command="validate"), 0)  # lexically apart
        proc = self.job.run(timeout=120)
        self.assertExit(proc, 1)
        self.assertIn("spec.output", proc.stderr)
        self.assertIn("spec.inputs[0].source", proc.stderr)
        self.assertIn("symbolic links", proc.stderr)
        self.assertFalse(os.path.exists(os.path.join(self.tmp, "data", "out")))


if __name__ == "__main__":
    unittest.main()
