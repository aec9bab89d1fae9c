"""Partition keys on the test cluster (issue 16): the two partition jobs of
tests/integration/test_partitions.py (file partitions across folders with mini_batch_context;
one model per (Store, Brand) of a tabular input returning [] under errorThreshold -1), run by the
chart-installed operator on a PersistentVolumeClaim, give the same output as the same manifests
in local mode.

Pods are host processes running `parallelrun` from the build folder (PARALLELRUN_TEST_RUNTIME
unset), like test_operator_production. Environment (set by CTest): PARALLELRUN_BIN, OPERATOR_BIN,
TESTCLUSTER_BIN; helm from PATH."""
import filecmp
import json
import os
import subprocess
import sys
import tempfile
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
from test_operator_e2e import PARALLELRUN_BIN, ChartOperatorCluster, make_claim  # noqa: E402
import test_partitions as tp  # noqa: E402


def on_volume(m, volume):
    """The manifest `m` with every data reference in the volume `data` (`volume`)."""
    spec = m["spec"]
    spec["volumes"] = [volume]
    spec["sourceDirectory"]["volume"] = "data"
    spec["output"]["volume"] = "data"
    for i in spec["inputs"]:
        i["source"]["volume"] = "data"
    spec.pop("miniBatchSize", None)
    spec.update(nodeCount=2, processCountPerNode=2, runInvocationTimeout=60)
    return m


def writer(root):
    def write(rel, content):
        path = os.path.join(root, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as f:
            f.write(content)
    return write


JOBS = {
    # name: (manifest builder, data writer, entry script name, entry script)
    "partition-songs": (tp.song_manifest, tp.write_songs, "songs.py", tp.SONG_SCRIPT),
    "partition-sales": (tp.sales_manifest, tp.write_sales, "train.py", tp.TRAIN_SCRIPT),
}


class PartitionsOnClusterTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.c = ChartOperatorCluster()

    @classmethod
    def tearDownClass(cls):
        cls.c.down()

    def test_partition_jobs_through_the_operator_equal_local_mode(self):
        work = tempfile.mkdtemp(prefix="prj-partitions-", dir=self.c.dir)
        folders = {}
        for name, (build, write_data, script, text) in JOBS.items():
            cluster_data = make_claim(self.c.cluster, name + "-data")
            local_data = os.path.join(work, name)
            for d in (cluster_data, local_data):
                write_data(writer(d))
                writer(d)(os.path.join("code", script), text)
            folders[name] = (cluster_data, local_data)
            m = on_volume(build(name), {"name": "data",
                                        "persistentVolumeClaim": {"claimName": name + "-data"}})
            self.c.kubectl("apply", "-f", "-", input=json.dumps(m))
        for name, (build, _w, _s, _t) in JOBS.items():
            out = self.c.kubectl("wait", "--for=condition=Complete", "prj/" + name,
                                 "--timeout=300s", check=False, timeout=320)
            job = self.c.get_job(name)
            self.assertEqual(out.returncode, 0, "%s: kubectl wait failed: %s\nstatus: %s" % (
                name, out.stderr, json.dumps(job.get("status"), indent=1)))
            self.assertEqual(job["status"]["phase"], "Succeeded")
            local_data = folders[name][1]
            m = on_volume(build(name), {"name": "data", "hostPath": {"path": local_data}})
            path = os.path.join(work, name + ".yaml")
            with open(path, "w") as f:
                json.dump(m, f)
            local = subprocess.run([PARALLELRUN_BIN, "run", path], capture_output=True,
                                   text=True, timeout=300)
            self.assertEqual(local.returncode, 0, local.stderr)
            with open(os.path.join(local_data, "output", ".parallelrun", "result.json")) as f:
                local_result = json.load(f)
            self.assertEqual(job["status"]["miniBatches"]["total"],
                             local_result["mini_batches_total"])
            self.assertEqual(job["status"]["miniBatches"]["total"], 9)

        # Songs: the append_row files are equal byte for byte.
        cluster_data, local_data = folders["partition-songs"]
        with open(os.path.join(cluster_data, "output", "parallel_run_step.txt"), "rb") as f:
            cluster_rows = f.read()
        with open(os.path.join(local_data, "output", "parallel_run_step.txt"), "rb") as f:
            local_rows = f.read()
        self.assertEqual(cluster_rows, local_rows)
        self.assertEqual(len(cluster_rows.splitlines()), 9)
        # Sales: the same models, byte for byte.
        cluster_data, local_data = folders["partition-sales"]
        a = os.path.join(cluster_data, "output", "models")
        b = os.path.join(local_data, "output", "models")
        names = sorted(os.listdir(b))
        self.assertEqual(len(names), 9)
        self.assertEqual(sorted(os.listdir(a)), names)
        match, mismatch, errors = filecmp.cmpfiles(a, b, names, shallow=False)
        self.assertEqual((mismatch, errors), ([], []))


if __name__ == "__main__":
    unittest.main()
