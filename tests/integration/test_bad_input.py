"""Bad input of every kind gets exit 1 and an error naming the field or file, and nothing runs."""
import os
import time
import unittest

import bad_input_catalog
from jobkit import JobTestCase, manifest

SCRIPT = "def run(mini_batch):\n    return mini_batch\n"


class BadInputTest(JobTestCase):
    def setUp(self):
        super().setUp()
        self.make_files(3)
        self.job.write("code/score.py", SCRIPT)

    def run_expect_invalid(self, m, *needles):
        self.job.write_manifest(m)
        proc = self.job.run()
        self.assertExit(proc, 1)
        for needle in needles:
            self.assertIn(needle, proc.stderr)
        self.assertFalse(os.path.exists(os.path.join(self.job.output, "logs")), "nothing may run")
        return proc

    def test_misspelt_field_is_named(self):
        m = manifest()
        m["spec"]["nodeCont"] = 2
        self.run_expect_invalid(m, "spec.nodeCont")

    def test_several_errors_are_reported_at_once(self):
        proc = self.run_expect_invalid(manifest(nodeCount=0, runMaxTry="three"),
                                       "spec.nodeCount", "spec.runMaxTry")
        self.assertIn("2 error", proc.stderr)

    def test_missing_input_folder(self):
        m = manifest(inputs=[{"name": "docs", "type": "file", "source": {"path": "nowhere/"}}])
        self.run_expect_invalid(m, "spec.inputs[0].source", "nowhere")

    def test_entry_script_not_found(self):
        self.run_expect_invalid(manifest(entryScript="missing.py"), "spec.entryScript", "missing.py")

    def test_entry_script_with_syntax_error(self):
        self.job.write("code/broken.py", "def run(mini_batch:\n    return 1\n")
        self.run_expect_invalid(manifest(entryScript="broken.py"), "syntax error", "broken.py", "line 1")

    def test_missing_side_input(self):
        m = manifest(sideInputs=[{"name": "model", "source": {"path": "models/none/"}}])
        self.run_expect_invalid(m, "spec.sideInputs[0].source", "models/none")

    def test_unknown_argument_reference(self):
        self.run_expect_invalid(manifest(arguments=["--m", "$(sideInputs.nope)"]), "spec.arguments[1]")

    def test_output_folder_that_cannot_be_created(self):
        self.job.write("blocker", "a file where a folder should be")
        self.run_expect_invalid(manifest(output={"path": "blocker/out/"}), "spec.output", "blocker")

    def test_unreadable_tabular_format(self):
        self.job.write("tab/data.parquet", "PAR1")
        m = manifest(inputs=[{"name": "t", "type": "tabular", "source": {"path": "tab/"}}])
        self.job.write_manifest(m)
        proc = self.job.run()
        self.assertExit(proc, 1)
        self.assertIn("data.parquet", proc.stderr + self.job.result())

    def test_unbound_volume_says_how_to_bind_it(self):
        m = manifest(volumes=[{"name": "data", "persistentVolumeClaim": {"claimName": "x"}}],
                     inputs=[{"name": "docs", "type": "file", "source": {"volume": "data", "path": "in/"}}])
        self.run_expect_invalid(m, "--volume data=")


class ValidateTest(JobTestCase):
    def test_valid_manifest_prints_a_summary(self):
        self.job.write_manifest(manifest(name="my-job"))
        proc = self.job.run(command="validate")
        self.assertExit(proc, 0)
        self.assertIn("valid", proc.stdout)
        self.assertIn("my-job", proc.stdout)

    def test_invalid_manifest_lists_errors(self):
        m = manifest()
        m["spec"]["nodeCont"] = 2
        self.job.write_manifest(m)
        proc = self.job.run(command="validate")
        self.assertExit(proc, 1)
        self.assertIn("spec.nodeCont", proc.stderr)


class CatalogTest(unittest.TestCase):
    """docs/bad-inputs.md: every bad input of bad_input_catalog.py run with the real binary; each
    message names its field, file or flag, and the page is what the catalog renders today."""

    maxDiff = None

    def test_every_bad_input_is_named_and_the_catalog_page_is_current(self):
        t0 = time.monotonic()
        results = bad_input_catalog.run_all()
        self.assertGreaterEqual(len(results), 60)
        problems = []
        for case, code, seen in results:
            missing = [n for n in case.needles if n not in seen]
            if missing:
                problems.append(f"{case.what}: the message does not name {missing}: {seen!r}")
            if case.command != "request" and code != case.exit_code:
                problems.append(f"{case.what}: exit {code}, expected {case.exit_code}: {seen!r}")
        self.assertEqual(problems, [], "\n".join(problems))
        with open(bad_input_catalog.DOC) as f:
            on_disk = f.read()
        self.assertEqual(on_disk, bad_input_catalog.render(results),
                         "docs/bad-inputs.md is stale: run `cd tests/integration && "
                         "python3 bad_input_catalog.py`")
        print(f"\n{len(results)} bad inputs in {time.monotonic() - t0:.1f} s")


if __name__ == "__main__":
    unittest.main()
