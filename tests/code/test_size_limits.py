"""Tests of size_limits.py on small trees made in a temporary folder."""
import os
import subprocess
import sys
import tempfile
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import size_limits  # noqa: E402


def body(lines):
    return "".join(f"  x += {i};\n" for i in range(lines))


class FunctionScanTest(unittest.TestCase):
    def test_finds_functions_members_and_tests_but_not_braces_inside(self):
        src = ("namespace a {\nstruct S {\n  int F() const {\n" + body(3) + "  }\n};\n"
               "int S::G(int y) : z_{1} {\n  auto l = [] { return \"}\"; };\n  if (y) {\n"
               "  }\n  return 0;\n}\nconstexpr int k[] = {1, 2};\n"
               "TEST(Suite, Case) {\n}\n}  // namespace a\n")
        names = [(n, last - first + 1) for n, first, last in size_limits.functions(src)]
        self.assertEqual(names, [("F", 5), ("S::G", 6), ("TEST(Suite,Case)", 2)])


class CheckTest(unittest.TestCase):
    def run_check(self, root, *extra):
        return subprocess.run([sys.executable, os.path.join(HERE, "size_limits.py"), "--root",
                               root, "--allowlist", os.path.join(root, "allow.txt"), *extra],
                              capture_output=True, text=True)

    def test_new_grown_and_stale_offenders_fail(self):
        with tempfile.TemporaryDirectory() as root:
            os.makedirs(os.path.join(root, "runtime"))
            src = os.path.join(root, "runtime", "a.cc")
            with open(src, "w") as f:
                f.write("void Long() {\n" + body(90) + "}\n")
            with open(os.path.join(root, "allow.txt"), "w") as f:
                f.write("# header\n")
            r = self.run_check(root)
            self.assertEqual(r.returncode, 1, r.stdout)
            self.assertIn("function runtime/a.cc:Long 92", r.stdout)

            with open(os.path.join(root, "allow.txt"), "w") as f:
                f.write("function runtime/a.cc:Long 91\n")
            r = self.run_check(root)
            self.assertEqual(r.returncode, 1, r.stdout)
            self.assertIn("91 -> 92", r.stdout)

            with open(os.path.join(root, "allow.txt"), "w") as f:
                f.write("function runtime/a.cc:Long 95\nfile runtime/gone.cc 700\n")
            r = self.run_check(root)
            self.assertEqual(r.returncode, 1, r.stdout)
            self.assertIn("runtime/gone.cc", r.stdout)

            r = self.run_check(root, "--prune")
            self.assertEqual(r.returncode, 0, r.stdout)
            with open(os.path.join(root, "allow.txt")) as f:
                self.assertEqual(f.read(), "function runtime/a.cc:Long 92\n")
            self.assertEqual(self.run_check(root).returncode, 0)

    def test_long_files_count_outside_tests_only(self):
        with tempfile.TemporaryDirectory() as root:
            os.makedirs(os.path.join(root, "operator"))
            for name in ("big.h", "big_test.cc"):
                with open(os.path.join(root, "operator", name), "w") as f:
                    f.write("// x\n" * 601)
            open(os.path.join(root, "allow.txt"), "w").close()
            r = self.run_check(root)
            self.assertEqual(r.returncode, 1, r.stdout)
            self.assertIn("file operator/big.h 601", r.stdout)
            self.assertNotIn("big_test.cc", r.stdout)


if __name__ == "__main__":
    unittest.main()
