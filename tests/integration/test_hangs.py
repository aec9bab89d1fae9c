"""Hangs and noise (issue 12): a hung init() ends at initTimeout with progress lines; a second
Ctrl-C exits at once; a torn last journal line is skipped on resume (a torn middle line is an
error naming the file and line); FIFOs and dangling links in inputs are listed; daemons started by
run() die with the job; a full disk gives `Failed: DiskFull` and one log line; an OOM kill says so.
The last two need root (a tmpfs mount, a memory cgroup) and are skipped without it."""
import glob
import os
import signal
import subprocess
import tempfile
import time
import unittest

from jobkit import BIN, JobTestCase, manifest, read_text, wait_for

SCRIPT = "def run(mini_batch):\n    return [os.path.basename(p) for p in mini_batch]\nimport os\n"


def job_processes(output_dir):
    """Pids of live processes whose environment names this job's output folder (the workers and
    everything they started, daemons included)."""
    needle = b"PARALLELRUN_OUTPUT_DIR=" + os.fsencode(output_dir)
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                if f.read().rsplit(")", 1)[1].split()[0] == "Z":
                    continue
            with open(f"/proc/{entry}/environ", "rb") as f:
                if needle in f.read().split(b"\0"):
                    pids.append(int(entry))
        except (OSError, IndexError):
            continue
    return pids


def alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


class HungInitTest(JobTestCase):
    def test_init_that_never_returns_fails_at_init_timeout_with_progress_lines(self):
        self.make_files(2)
        self.job.write("code/score.py", "import time\ndef init():\n    time.sleep(3600)\n" + SCRIPT)
        self.job.write_manifest(manifest(initTimeout=6, processCountPerNode=1))
        t0 = time.monotonic()
        proc = self.job.run(timeout=120)
        took = time.monotonic() - t0
        self.assertExit(proc, 42)
        self.assertLess(took, 40, "a hung init() must end at initTimeout, not 3 x initTimeout")
        result = self.job.result()
        self.assertFirstLine(result, "Failed: InitFailed")
        self.assertIn("initTimeout (6 s)", result)
        self.assertIn("init() still running on node 127.0.0.1 process000", proc.stderr)


class SecondInterruptTest(JobTestCase):
    def test_second_sigint_exits_at_once_and_the_job_resumes(self):
        self.make_files(6)
        # run() ignores SIGTERM and sleeps: the first interrupt's graceful stop takes long.
        self.job.write("code/score.py", """
import os, signal, time
def init():
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
def run(mini_batch):
    if not os.path.exists(os.path.join(os.path.dirname(__file__), "..", "slow-done")):
        open(os.path.join(os.path.dirname(__file__), "..", "started"), "w").close()
        time.sleep(60)
    return [os.path.basename(p) for p in mini_batch]
""")
        self.job.write_manifest(manifest(miniBatchSize=1))
        p = subprocess.Popen([BIN, "run", os.path.join(self.tmp, "job.yaml")], cwd=self.tmp,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.addCleanup(lambda: p.poll() is None and p.kill())
        wait_for("run() to start", lambda: os.path.exists(os.path.join(self.tmp, "started")), 60)
        p.send_signal(signal.SIGINT)
        time.sleep(0.5)  # the second one comes while the first one's graceful stop waits
        t0 = time.monotonic()
        p.send_signal(signal.SIGINT)
        _, err = p.communicate(timeout=30)
        took = time.monotonic() - t0
        self.assertEqual(p.returncode, 130, err)
        self.assertLess(took, 5, err)
        self.assertIn("interrupted again", err)
        wait_for("the job's processes to be gone", lambda: not job_processes(self.job.output), 10)
        # Resumable: the same command finishes the job.
        self.job.write("slow-done", "")
        proc = self.job.run()
        self.assertExit(proc, 0)
        self.assertEqual(len(self.job.output_lines()), 6)


class TornJournalTest(JobTestCase):
    def finished_then_reopened(self):
        """A summary_only job run to the end, then made unfinished again (its result removed), so
        that the next run resumes from the journal."""
        self.make_files(6)
        self.job.write("code/score.py", SCRIPT)
        self.job.write_manifest(manifest(outputAction="summary_only"))
        self.assertExit(self.job.run(), 0)
        os.remove(os.path.join(self.job.output, ".parallelrun", "result.json"))
        os.remove(os.path.join(self.job.logs, "job_result.txt"))
        return os.path.join(self.job.output, ".parallelrun", "journal")

    def test_torn_last_line_is_skipped_with_a_warning(self):
        journal = self.finished_then_reopened()
        with open(journal, "a") as f:
            f.write('{"t":"result","mb":0,"a\n')
        proc = self.job.run()
        self.assertExit(proc, 0)
        self.assertFirstLine(self.job.result(), "Succeeded")
        self.assertIn("torn last line", proc.stderr)
        self.assertIn(journal, proc.stderr)

    def test_torn_middle_line_is_an_error_naming_file_and_line(self):
        journal = self.finished_then_reopened()
        lines = read_text(journal).splitlines(keepends=True)
        lines.insert(2, '{"t":"res\n')
        with open(journal, "w") as f:
            f.writelines(lines)
        proc = self.job.run()
        self.assertExit(proc, 1)
        self.assertIn(journal + " line 3", proc.stderr)


class InputEntriesTest(JobTestCase):
    def test_fifos_and_dangling_links_are_listed_in_a_warning(self):
        self.make_files(3)
        os.mkfifo(os.path.join(self.tmp, "data", "pipe"))
        os.symlink("/nonexistent/target", os.path.join(self.tmp, "data", "dead-link"))
        self.job.write("code/score.py", SCRIPT)
        self.job.write_manifest(manifest())
        proc = self.job.run()
        self.assertExit(proc, 0)
        self.assertIn("spec.inputs[0]: left out 2 entries", proc.stderr)
        self.assertIn("pipe (a FIFO)", proc.stderr)
        self.assertIn("dead-link (a dangling symbolic link)", proc.stderr)
        self.assertEqual(len(self.job.output_lines()), 3)


class DaemonTest(JobTestCase):
    def test_a_daemonised_grandchild_of_run_dies_with_the_job(self):
        self.make_files(2)
        self.job.write("code/score.py", """
import os, time
def run(mini_batch):
    pidfile = os.path.join(os.path.dirname(__file__), "..", "daemon.pid")
    if os.fork() == 0:
        os.setsid()
        if os.fork() == 0:
            with open(pidfile + ".tmp", "w") as f:
                f.write(str(os.getpid()))
            os.rename(pidfile + ".tmp", pidfile)
            time.sleep(600)
        os._exit(0)
    while not os.path.exists(pidfile):
        time.sleep(0.01)
    return [os.path.basename(p) for p in mini_batch]
""")
        self.job.write_manifest(manifest(processCountPerNode=1, miniBatchSize=10))
        proc = self.job.run()
        self.assertExit(proc, 0)
        pid = int(read_text(os.path.join(self.tmp, "daemon.pid")))
        wait_for(f"the daemon (pid {pid}) to be gone", lambda: not alive(pid), 10)
        self.assertEqual(job_processes(self.job.output), [])


@unittest.skipUnless(os.geteuid() == 0, "needs root to mount a small tmpfs")
class DiskFullTest(JobTestCase):
    def test_full_output_disk_fails_with_disk_full_and_one_log_line(self):
        self.make_files(300)
        self.job.write("code/score.py",
                       "import os\ndef run(mini_batch):\n"
                       "    return ['x' * 20000 + os.path.basename(p) for p in mini_batch]\n")
        disk = os.path.join(self.tmp, "disk")
        os.makedirs(disk)
        if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", disk]).returncode:
            self.skipTest("cannot mount a tmpfs here")
        self.addCleanup(subprocess.run, ["umount", "-l", disk])
        self.job.write_manifest(manifest(output={"path": "disk/out/"}))
        proc = self.job.run(timeout=200)
        self.assertExit(proc, 42)
        result = read_text(os.path.join(disk, "out", "logs", "job_result.txt"))
        self.assertFirstLine(result, "Failed: DiskFull")
        self.assertIn(os.path.join(disk, "out"), result)
        self.assertNotIn("LOG ERROR", proc.stderr)
        self.assertLessEqual(proc.stderr.count("cannot write the log file"), 3, proc.stderr)
        self.assertIn("Failed: DiskFull", proc.stdout)


def memory_cgroup(limit_bytes):
    """A fresh memory cgroup limited to limit_bytes: (procs file, remove function), or None."""
    for base, limit_file in (("/sys/fs/cgroup/memory", "memory.limit_in_bytes"),
                             ("/sys/fs/cgroup", "memory.max")):
        if not os.path.exists(os.path.join(base, "cgroup.procs")):
            continue
        try:
            path = tempfile.mkdtemp(prefix="parallelrun-hangs-oom-", dir=base)
        except OSError:
            continue
        try:
            with open(os.path.join(path, limit_file), "w") as f:
                f.write(str(limit_bytes))
        except OSError:
            os.rmdir(path)
            continue
        return os.path.join(path, "cgroup.procs"), lambda p=path: os.rmdir(p)
    return None


@unittest.skipUnless(os.geteuid() == 0, "needs root to make a memory cgroup")
class OomKillTest(JobTestCase):
    def test_worker_killed_by_the_oom_killer_says_so_with_its_rss(self):
        cgroup = memory_cgroup(400 << 20)
        if cgroup is None:
            self.skipTest("no writable memory cgroup here")
        procs, remove = cgroup
        self.make_files(1)
        self.job.write("code/score.py",
                       "def run(mini_batch):\n    x = bytearray(3 << 30)\n    return mini_batch\n")
        self.job.write_manifest(manifest(processCountPerNode=1, runMaxTry=1))

        def enter():
            with open(procs, "w") as f:
                f.write(str(os.getpid()))
        proc = subprocess.run([BIN, "run", os.path.join(self.tmp, "job.yaml")], cwd=self.tmp,
                              capture_output=True, text=True, timeout=120, preexec_fn=enter)
        wait_for("the cgroup to empty", lambda: not read_text(procs).strip(), 10)
        remove()
        self.assertExit(proc, 42)
        errors = read_text(os.path.join(self.job.logs, "user", "error.txt"))
        self.assertIn("out-of-memory killer", errors)
        self.assertRegex(errors, r"peak RSS was \d+ MiB")


if __name__ == "__main__":
    unittest.main()
