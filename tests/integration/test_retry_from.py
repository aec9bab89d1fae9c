"""End-to-end tests of `retryFrom` (SPEC.md §2.1): a first `parallelrun run` where some
mini-batches fail, then a second run on a new output folder with `retryFrom` naming the first,
which reruns only what failed and writes a complete output file."""
import csv
import hashlib
import io
import os
import unittest

from jobkit import JobTestCase, manifest, read_text

# Fails the mini-batches holding f0006.txt and f0017.txt (mini-batches 1 and 3 of five).
FIRST_SCRIPT = """
import os
def run(mini_batch):
    names = [os.path.basename(p) for p in mini_batch]
    if 'f0006.txt' in names or 'f0017.txt' in names:
        raise ValueError('cannot score ' + ','.join(names))
    return [n + ' first' for n in names]
"""

FIXED_SCRIPT = """
import os
def run(mini_batch):
    return [os.path.basename(p) + ' second' for p in mini_batch]
"""


def snapshot(folder):
    """Every file under `folder` with its size, modification time and content hash."""
    out = {}
    for d, _, files in os.walk(folder):
        for f in files:
            p = os.path.join(d, f)
            with open(p, "rb") as fh:
                digest = hashlib.sha256(fh.read()).hexdigest()
            st = os.stat(p)
            out[p] = (st.st_size, st.st_mtime_ns, digest)
    return out


class RetryFromTest(JobTestCase):
    def run_first(self, n=23):
        names = self.make_files(n)
        self.job.write("code/score.py", FIRST_SCRIPT)
        self.job.write_manifest(manifest(runMaxTry=1))
        proc = self.job.run()
        self.assertExit(proc, 0)
        self.assertIn("mini_batches_failed: 2", self.job.result())
        return names

    def write_retry(self, rel="retry.yaml", output="output2/", retry_from="output/", **spec):
        self.job.write("code2/score.py", FIXED_SCRIPT)
        self.job.write_manifest(manifest(runMaxTry=1, sourceDirectory={"path": "code2/"},
                                         output={"path": output}, retryFrom=retry_from, **spec),
                                rel=rel)

    def test_reruns_only_failed_mini_batches_and_writes_every_row_once_in_order(self):
        names = self.run_first()
        before = snapshot(self.job.output)
        self.write_retry()
        proc = self.job.run(manifest_rel="retry.yaml")
        self.assertExit(proc, 0)

        # Mini-batches 1 (f0005..f0009) and 3 (f0015..f0019) ran again; the others were carried.
        rerun = set(names[5:10] + names[15:20])
        expected = [n + (" second" if n in rerun else " first") for n in names]
        self.assertEqual(self.job.read("output2/parallel_run_step.txt").splitlines(), expected)

        result = self.job.read("output2/logs/job_result.txt")
        self.assertFirstLine(result, "Succeeded")
        self.assertIn("mini_batches_succeeded: 5\n", result)
        self.assertIn("mini_batches_carried_over: 3\n", result)
        self.assertIn(f"carried_over_from: {self.job.output}\n", result)
        self.assertIn("items_succeeded: 23\n", result)

        with open(os.path.join(self.tmp, "output2/logs/sys/job_report/processed_mini-batches.csv"),
                  newline="") as f:
            rows = list(csv.DictReader(f))
        carried = sorted(int(r["mini_batch_id"]) for r in rows if r["status"] == "CARRIED_OVER")
        ran = sorted(int(r["mini_batch_id"]) for r in rows if r["status"] == "RUN_DONE")
        self.assertEqual(carried, [0, 2, 4])
        self.assertEqual(ran, [1, 3])
        self.assertTrue(all(r["accepted"] == "1" for r in rows))
        self.assertEqual(sum(int(r["succeeded"]) for r in rows), 23)

        overview = "".join(read_text(os.path.join(self.tmp, "output2/logs", f))
                           for f in os.listdir(os.path.join(self.tmp, "output2/logs"))
                           if f.startswith("job_progress_overview."))
        self.assertIn(f"carried over from {self.job.output}", overview)
        self.assertEqual(snapshot(self.job.output), before)  # the earlier run is only read

    def test_header_rows_are_carried_once_at_the_top(self):
        buf = io.StringIO()
        w = csv.writer(buf)
        w.writerow(["id", "name"])
        for i in range(40):
            w.writerow([i, f"name {i}"])
        self.job.write("data/a.csv", buf.getvalue())
        inputs = [{"name": "rows", "type": "tabular", "source": {"path": "data/"}}]
        self.job.write("code/score.py", """
def run(mini_batch):
    if 7 in set(mini_batch['id']):
        raise ValueError('id 7 cannot be scored yet')
    out = mini_batch[['id']].copy()
    out['double'] = out['id'] * 2
    return out
""")
        self.job.write_manifest(manifest(inputs=inputs, miniBatchSize="100", runMaxTry=1,
                                         appendRowHeader=True))
        self.assertExit(self.job.run(), 0)
        first = self.job.output_lines()
        self.assertEqual(first[0], "id double")
        self.assertNotIn("7 14", first)

        self.job.write("code2/score.py", """
def run(mini_batch):
    out = mini_batch[['id']].copy()
    out['double'] = out['id'] * 2
    return out
""")
        self.job.write_manifest(manifest(inputs=inputs, miniBatchSize="100", runMaxTry=1,
                                         appendRowHeader=True, sourceDirectory={"path": "code2/"},
                                         output={"path": "output2/"}, retryFrom="output/"),
                                rel="retry.yaml")
        self.assertExit(self.job.run(manifest_rel="retry.yaml"), 0)
        lines = self.job.read("output2/parallel_run_step.txt").splitlines()
        self.assertEqual(lines, ["id double"] + [f"{i} {2 * i}" for i in range(40)])

    def test_changed_inputs_fail_with_invalid_input_naming_the_difference(self):
        self.run_first()
        before = snapshot(self.job.output)
        self.job.write("data/f0023.txt", "item 23\n")
        self.write_retry()
        proc = self.job.run(manifest_rel="retry.yaml")
        self.assertExit(proc, 1)
        self.assertIn("InvalidInput", proc.stderr)
        self.assertIn(f"spec.retryFrom ({self.job.output})", proc.stderr)
        self.assertIn("mini-batch 4 differs", proc.stderr)
        result = self.job.read("output2/logs/job_result.txt")
        self.assertFirstLine(result, "Failed: InvalidInput")
        self.assertFalse(os.path.exists(os.path.join(self.tmp, "output2/parallel_run_step.txt")))
        self.assertEqual(snapshot(self.job.output), before)

    def test_retry_from_its_own_output_folder_is_refused_untouched(self):
        self.run_first()
        before = snapshot(self.job.output)
        self.write_retry(output="output/")
        proc = self.job.run(manifest_rel="retry.yaml")
        self.assertExit(proc, 1)
        self.assertIn("names this job's own output folder", proc.stderr)
        self.assertEqual(snapshot(self.job.output), before)

    def test_folder_that_is_not_a_parallelrun_output_is_refused(self):
        self.make_files(5)
        self.write_retry(retry_from="data/")
        proc = self.job.run(manifest_rel="retry.yaml")
        self.assertExit(proc, 1)
        self.assertIn("not the output folder of a parallelrun run", proc.stderr)
        self.assertFalse(os.path.exists(os.path.join(self.tmp, "data/.parallelrun")))


if __name__ == "__main__":
    unittest.main()
