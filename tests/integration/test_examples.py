"""The shipped examples run as the README says and produce what their docs promise."""
import os
import shutil
import subprocess
import tempfile
import unittest

from jobkit import BIN

EXAMPLES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "examples")


class ExamplesTest(unittest.TestCase):
    def run_example(self, name, *extra):
        tmp = tempfile.mkdtemp(prefix="parallelrun-example-")
        self.addCleanup(shutil.rmtree, tmp, True)
        root = os.path.join(tmp, name)
        shutil.copytree(os.path.join(EXAMPLES, name), root, ignore=shutil.ignore_patterns("output"))
        proc = subprocess.run([BIN, "run", os.path.join(root, "job.yaml"), *extra], capture_output=True,
                              text=True, timeout=300)
        self.assertEqual(proc.returncode, 0, proc.stdout + proc.stderr)
        return root, proc

    def test_score_files_retries_the_flaky_documents_and_scores_the_rest(self):
        root, proc = self.run_example("score-files")
        with open(os.path.join(root, "output", "scores.txt")) as f:
            lines = f.read().splitlines()
        self.assertEqual(len(lines), 47)  # 48 documents, one too short to score
        self.assertIn("doc-017-flaky.txt", "\n".join(lines))
        self.assertIn("Succeeded", proc.stdout)

    def test_score_table_labels_every_review_with_one_header(self):
        root, _ = self.run_example("score-table")
        with open(os.path.join(root, "output", "sentiment.txt")) as f:
            lines = f.read().splitlines()
        self.assertEqual(lines[0], "review_id rating label lines")
        self.assertEqual(len(lines), 301)
        self.assertEqual([int(l.split()[0]) for l in lines[1:]], list(range(1, 301)))

    def test_native_scorer_runs_the_shared_library_in_the_native_host(self):
        # The example library is built next to the binary: <build>/examples/native-scorer.
        build = os.path.dirname(os.path.dirname(os.path.abspath(BIN)))
        lib_dir = os.path.join(build, "examples", "native-scorer")
        root, _ = self.run_example("native-scorer", "--volume", f"scorer={lib_dir}")
        with open(os.path.join(root, "output", "counts.txt")) as f:
            lines = f.read().splitlines()
        self.assertEqual(len(lines), 9)  # ten documents, one too short
        with open(os.path.join(root, "output", "logs", "job_result.txt")) as f:
            self.assertIn("items_failed: 1", f.read())


if __name__ == "__main__":
    unittest.main()
