"""The parallelrun image, run for real with podman: `parallelrun run` of a two-node job inside
`localhost/parallelrun:<appVersion>` (scripts/build-image.sh), as uid 10001, with a read-only root
file system and no network, the way a Kubernetes pod with the chart's securityContext runs it.

Skips (and says why) only when podman or the image is missing; scripts/test.sh builds the image
first, so CI never skips. PARALLELRUN_IMAGE names another image. Run by CTest (image.run).
"""

import os
import re
import shutil
import subprocess
import tempfile
import unittest
import uuid

import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
UID = 10001
ITEMS = 23

ENTRY_SCRIPT = """
import os
def run(mini_batch):
    # One row per item: the item and the uid that processed it.
    return ["%s uid=%d" % (os.path.basename(p), os.getuid()) for p in mini_batch]
"""


def app_version():
    with open(os.path.join(REPO, "charts", "parallelrun", "Chart.yaml")) as f:
        return str(yaml.safe_load(f)["appVersion"])


IMAGE = os.environ.get("PARALLELRUN_IMAGE") or "localhost/parallelrun:" + app_version()


def skip_reason():
    if not shutil.which("podman"):
        return "podman is not installed (bash scripts/install-tools.sh)"
    if subprocess.run(["podman", "image", "exists", IMAGE]).returncode != 0:
        return "image %s is not built (bash scripts/build-image.sh)" % IMAGE
    return None


class ImageRunTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        reason = skip_reason()
        if reason:
            print("IMAGE TEST SKIPPED: " + reason, flush=True)
            raise unittest.SkipTest(reason)

    def setUp(self):
        self.root = tempfile.mkdtemp(prefix="parallelrun-image-test-")
        self.addCleanup(shutil.rmtree, self.root, ignore_errors=True)
        self.names = []
        data = os.path.join(self.root, "data")
        os.makedirs(data)
        for i in range(ITEMS):
            name = "doc%03d.txt" % i
            with open(os.path.join(data, name), "w") as f:
                f.write("document %d\n" % i)
            self.names.append(name)
        os.makedirs(os.path.join(self.root, "code"))
        with open(os.path.join(self.root, "code", "score.py"), "w") as f:
            f.write(ENTRY_SCRIPT)
        spec = {
            "entryScript": "score.py",
            "sourceDirectory": {"path": "code/"},
            "inputs": [{"name": "docs", "type": "file", "source": {"path": "data/"}}],
            "output": {"path": "output/"},
            "miniBatchSize": 3,
            "nodeCount": 2,
            "processCountPerNode": 2,
            "runInvocationTimeout": 120,
            "appendRowFileName": "rows.txt",
        }
        with open(os.path.join(self.root, "job.yaml"), "w") as f:
            yaml.safe_dump({"apiVersion": "parallelrun.io/v1alpha1", "kind": "ParallelRunJob",
                            "metadata": {"name": "image-test"}, "spec": spec}, f)
        # The job's uid owns the job folder (as fsGroup makes a volume writable on a cluster);
        # code and data are mounted read-only over it.
        for path in [self.root] + [os.path.join(self.root, d) for d in ("code", "data")]:
            os.chown(path, UID, UID)

    def podman_run(self, *extra):
        name = "parallelrun-image-test-" + uuid.uuid4().hex[:8]
        self.addCleanup(subprocess.run, ["podman", "rm", "-f", "--ignore", name],
                        capture_output=True)
        command = ["podman", "run", "--rm", "--name", name, "--label", "parallelrun-test=image",
                   "--network=none", "--user", "%d:%d" % (UID, UID), "--read-only",
                   "-v", "%s:/job" % self.root,
                   "-v", "%s:/job/code:ro" % os.path.join(self.root, "code"),
                   "-v", "%s:/job/data:ro" % os.path.join(self.root, "data")]
        command += list(extra) + [IMAGE, "parallelrun", "run", "/job/job.yaml"]
        return subprocess.run(command, capture_output=True, text=True, timeout=600)

    def assert_one_row_per_item(self, proc):
        self.assertEqual(proc.returncode, 0, "exit %d\nstdout:\n%s\nstderr:\n%s" % (
            proc.returncode, proc.stdout, proc.stderr))
        with open(os.path.join(self.root, "output", "rows.txt")) as f:
            rows = [line.split() for line in f.read().splitlines()]
        self.assertEqual(sorted(r[0] for r in rows), self.names, "exactly one row per item")
        self.assertEqual({r[1] for r in rows}, {"uid=%d" % UID})
        self.assertEqual(os.stat(os.path.join(self.root, "output", "rows.txt")).st_uid, UID)
        with open(os.path.join(self.root, "output", "logs", "job_result.txt")) as f:
            self.assertEqual(f.readline().strip(), "Succeeded")
        # Both nodes ran agents (local mode names node i 127.0.0.<i+1>).
        nodes = os.listdir(os.path.join(self.root, "output", "logs", "sys", "node"))
        self.assertEqual(sorted(nodes), ["127.0.0.1", "127.0.0.2"])

    def test_two_node_job_as_uid_10001_on_a_read_only_root(self):
        # podman's --read-only mounts a tmpfs on /tmp, /var/tmp and /run.
        self.assert_one_row_per_item(self.podman_run())

    def test_read_only_root_without_podman_tmpfs_needs_only_a_tmp_volume(self):
        # Kubernetes' readOnlyRootFilesystem gives no writable /tmp: the only writable places are
        # the volumes, so an emptyDir at /tmp is what the pod needs (docs/operations.md).
        tmp = os.path.join(self.root, "tmp")
        os.makedirs(tmp)
        os.chown(tmp, UID, UID)
        self.assert_one_row_per_item(self.podman_run("--read-only-tmpfs=false",
                                                     "-v", "%s:/tmp" % tmp))
        self.assertEqual(os.listdir(tmp), [], "the run left files in /tmp")

    def test_read_only_root_without_a_writable_tmp_fails_at_once_saying_so(self):
        proc = self.podman_run("--read-only-tmpfs=false")
        self.assertEqual(proc.returncode, 1, proc.stderr)
        self.assertIn("temporary folder", proc.stderr)
        self.assertFalse(os.path.exists(os.path.join(self.root, "output")))

    def test_image_contents(self):
        proc = subprocess.run(
            ["podman", "run", "--rm", "--network=none", "--read-only", "--read-only-tmpfs=false",
             IMAGE, "sh", "-c",
             "id -u; ls /usr/local/bin; ls /usr/local/share/parallelrun/python;"
             " parallelrun --version; parallelrun-operator --version;"
             " python3 -c 'import pandas; print(pandas.__version__)'"],
            capture_output=True, text=True, timeout=300)
        self.assertEqual(proc.returncode, 0, proc.stderr)
        lines = proc.stdout.split()
        self.assertEqual(lines[0], str(UID), "the image's default user")
        for binary in ("parallelrun", "parallelrun-operator", "parallelrun-native-host"):
            self.assertIn(binary, lines)
        # Every binary loads its libraries from the image's packages.
        self.assertIn("parallelrun " + app_version(), proc.stdout)
        self.assertIn("parallelrun-operator " + app_version(), proc.stdout)
        self.assertTrue(re.search(r"^\d+\.\d+", lines[-1]), "pandas imports: " + proc.stdout)


if __name__ == "__main__":
    unittest.main()
