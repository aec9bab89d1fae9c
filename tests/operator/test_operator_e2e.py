"""End-to-end tests of parallelrun-operator on the local test cluster (tests/cluster), with the
real kubectl, the real helm and the official Python Kubernetes client.

One cluster per test class. The operator is installed by the chart with the real `helm install
--wait`: two replicas, both Ready, one leading (ChartOperatorCluster), under the chart's service
account, so a permission the chart lacks fails these tests. Job data and output live on a
PersistentVolumeClaim; job pods run as uid 10001 with fsGroup 10001.

Pods: PARALLELRUN_TEST_RUNTIME=container runs them as podman containers from local images (the
operator from parallelrun:<appVersion>, jobs from PARALLELRUN_TEST_IMAGE, e.g. parallelrun:0.1.0,
built by scripts/build-image.sh); unset, they are host processes running `parallelrun` and
`parallelrun-operator` from the build folder (the test cluster puts PATH of `testcluster up` in
pods). OperatorCluster (a host-process operator) is for test_operator_production.

Environment (set by CTest): PARALLELRUN_BIN, OPERATOR_BIN, TESTCLUSTER_BIN; helm from PATH.
"""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "tests", "cluster"))
sys.path.insert(0, os.path.join(ROOT, "tests", "chart"))
from test_e2e_kubectl import Cluster, wait_until  # noqa: E402
import chartlib  # noqa: E402

PARALLELRUN_BIN = os.environ["PARALLELRUN_BIN"]
OPERATOR_BIN = os.environ["OPERATOR_BIN"]
CRD = os.path.join(ROOT, "crds", "parallelrun.io_parallelrunjobs.yaml")
EXAMPLE = os.path.join(ROOT, "examples", "score-files")
SLOW = os.path.join(HERE, "testdata", "slow")
OPERATOR_NS = "parallelrun-system"
# The image of the operator pods and the job pods (--default-image). On a container cluster
# (PARALLELRUN_TEST_RUNTIME=container) it must exist in the local podman storage, e.g.
# PARALLELRUN_TEST_IMAGE=parallelrun:0.1.0.
JOB_IMAGE = os.environ.get("PARALLELRUN_TEST_IMAGE", "parallelrun:e2e")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def chart_rbac():
    """The chart's ServiceAccount and RBAC objects (as `helm template` renders them) and the
    ServiceAccount's name."""
    docs = chartlib.render_docs(namespace=OPERATOR_NS,
                                values={"leaderElection.enabled": True})
    keep = [d for d in docs if d["kind"] in ("ServiceAccount", "ClusterRole",
                                             "ClusterRoleBinding", "Role", "RoleBinding")]
    account = [d["metadata"]["name"] for d in keep if d["kind"] == "ServiceAccount"][0]
    return chartlib.yaml.safe_dump_all(keep), account


# What the operator's service account did in every cluster of this module (the test cluster's
# audit log): {(verb, group, resource): allowed}.
AUDIT = {}
# The unused-rights check needs every class to have run (CTest runs the whole module).
FULL_SUITE = os.environ.get("OPERATOR_E2E_FULL") == "1"


def collect_audit(state_dir, account_prefix="system:serviceaccount:" + OPERATOR_NS + ":"):
    try:
        with open(os.path.join(state_dir, "audit.log")) as f:
            lines = f.read().splitlines()
    except OSError:
        return
    for line in lines:
        rec = json.loads(line)
        if not rec["user"].startswith(account_prefix):
            continue
        resource = rec["resource"] + ("/" + rec["subresource"] if rec["subresource"] else "")
        key = (rec["verb"], rec["group"], resource)
        AUDIT[key] = AUDIT.get(key, True) and rec["allowed"]


class OperatorCluster:
    """A test cluster with the CRD, the chart's RBAC and a running operator."""

    def __init__(self):
        os.environ["PATH"] = os.path.dirname(PARALLELRUN_BIN) + os.pathsep + os.environ["PATH"]
        self.cluster = Cluster()
        self.dir = self.cluster.dir
        self.operator = None
        try:
            self.kubectl("apply", "-f", CRD)
            self.kubectl("wait", "--for=condition=Established",
                         "crd/parallelrunjobs.parallelrun.io", "--timeout=60s")
            self.kubectl("create", "namespace", OPERATOR_NS)
            rbac, account = chart_rbac()
            self.kubectl("apply", "-n", OPERATOR_NS, "-f", "-", input=rbac)
            token_file = os.path.join(self.dir, "tokens", OPERATOR_NS, account)
            wait_until(lambda: os.path.exists(token_file), 30, "the operator's token")
            self.operator_kubeconfig = self._service_account_kubeconfig(token_file)
            self.start_operator()
        except Exception:
            self.down()
            raise

    def _service_account_kubeconfig(self, token_file):
        with open(self.cluster.kubeconfig) as f:
            server = [line.split("server:", 1)[1].strip() for line in f
                      if "server:" in line][0]
        path = os.path.join(self.dir, "operator.kubeconfig")
        with open(token_file) as f:
            token = f.read().strip()
        with open(path, "w") as f:
            f.write(f"""apiVersion: v1
kind: Config
clusters:
- name: testcluster
  cluster:
    server: {server}
    certificate-authority: {os.path.join(self.dir, "ca.crt")}
users:
- name: operator
  user:
    token: {token}
contexts:
- name: operator
  context: {{cluster: testcluster, user: operator, namespace: {OPERATOR_NS}}}
current-context: operator
""")
        return path

    def start_operator(self):
        self.metrics_port = free_port()
        self.health_port = free_port()
        log = open(os.path.join(self.dir, "operator.log"), "a")
        self.operator = subprocess.Popen(
            [OPERATOR_BIN, "--kubeconfig", self.operator_kubeconfig,
             "--default-image", JOB_IMAGE,
             "--metrics-bind-address", f"127.0.0.1:{self.metrics_port}",
             "--health-probe-bind-address", f"127.0.0.1:{self.health_port}",
             "--leader-elect", "--leader-election-namespace", OPERATOR_NS,
             "--log-format", "text"],
            stdout=log, stderr=subprocess.STDOUT)
        log.close()

    def restart_operator(self):
        self.stop_operator(signal.SIGKILL)
        self.start_operator()

    def stop_operator(self, sig=signal.SIGTERM):
        if self.operator and self.operator.poll() is None:
            self.operator.send_signal(sig)
            try:
                self.operator.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.operator.kill()
                self.operator.wait()
        self.operator = None

    def operator_log(self):
        try:
            with open(os.path.join(self.dir, "operator.log")) as f:
                return f.read()[-6000:]
        except OSError:
            return ""

    def down(self):
        self.stop_operator()
        collect_audit(self.dir)
        self.cluster.down()

    def kubectl(self, *args, **kwargs):
        return self.cluster.kubectl(*args, **kwargs)

    def get_job(self, name, ns="default"):
        out = self.kubectl("get", "prj", name, "-n", ns, "-o", "json", check=False)
        return json.loads(out.stdout) if out.returncode == 0 else None

    def wait_phase(self, name, phases, timeout=240, ns="default"):
        def reached():
            job = self.get_job(name, ns)
            phase = (job or {}).get("status", {}).get("phase")
            return job if phase in phases else None
        try:
            return wait_until(reached, timeout, f"job {name} to reach {phases}")
        except AssertionError:
            job = self.get_job(name, ns)
            raise AssertionError("job %s never reached %s; last status %s\noperator log:\n%s" % (
                name, phases, json.dumps((job or {}).get("status"), indent=1),
                self.operator_log()))


class ChartOperatorCluster(OperatorCluster):
    """A test cluster with the operator installed by the chart with the real `helm install
    --wait`: CRDs, RBAC, the admission webhook and a Deployment of two replicas, both Ready, one
    leading. On a container cluster its pods run parallelrun:<appVersion> as uid 10001."""

    REPLICAS = 2

    def __init__(self):
        os.environ["PATH"] = os.path.dirname(PARALLELRUN_BIN) + os.pathsep + os.environ["PATH"]
        self.cluster = Cluster()
        self.dir = self.cluster.dir
        self.operator = None
        try:
            self.metrics_port, self.health_port = free_port(), free_port()
            chartlib.install_chart(self.cluster.kubeconfig, namespace=OPERATOR_NS, wait=True,
                                   timeout=240, values={
                                       "replicaCount": self.REPLICAS,
                                       "metrics.port": self.metrics_port,
                                       "health.port": self.health_port,
                                       "webhook.port": free_port(),
                                       "image.repository": JOB_IMAGE.rsplit(":", 1)[0],
                                       "image.tag": JOB_IMAGE.rsplit(":", 1)[1],
                                       "defaultJobImage": JOB_IMAGE})
            chartlib.wait_for_operator(self.cluster.kubeconfig, namespace=OPERATOR_NS)
            self.leader()
        except Exception:
            self.down()
            raise

    def operator_pods(self):
        out = self.kubectl("get", "pods", "-n", OPERATOR_NS, "-l",
                           "app.kubernetes.io/component=operator", "-o", "json")
        return [p for p in json.loads(out.stdout)["items"]
                if not p["metadata"].get("deletionTimestamp")]

    def leader(self, timeout=60):
        """The name of the operator pod that holds the Lease, once every replica is Ready and
        exactly one says it leads (its log names the Lease's holderIdentity)."""
        def one_leader():
            pods = self.operator_pods()
            ready = [p for p in pods if any(
                c["type"] == "Ready" and c["status"] == "True"
                for c in p.get("status", {}).get("conditions", []))]
            if len(pods) != self.REPLICAS or len(ready) != self.REPLICAS:
                return None
            lease = self.kubectl("get", "lease", "-n", OPERATOR_NS, "parallelrun-operator",
                                 "-o", "json", check=False)
            if lease.returncode != 0:
                return None
            holder = json.loads(lease.stdout)["spec"].get("holderIdentity", "")
            leading = [p["metadata"]["name"] for p in pods
                       if holder and f"{holder} is leading" in self.kubectl(
                           "logs", "-n", OPERATOR_NS, p["metadata"]["name"],
                           check=False).stdout]
            return leading[0] if len(leading) == 1 else None
        return wait_until(one_leader, timeout,
                          f"{self.REPLICAS} Ready operator replicas, exactly one leading")

    def pod_ip(self, name):
        out = self.kubectl("get", "pod", "-n", OPERATOR_NS, name, "-o", "json")
        return json.loads(out.stdout)["status"]["podIP"]

    def restart_operator(self):
        """Kills the leading replica (SIGKILL: no Lease release); the standby takes over and the
        Deployment replaces the pod."""
        leader = self.leader()
        self.kubectl("delete", "pod", "-n", OPERATOR_NS, leader, "--grace-period=0", "--force")
        wait_until(lambda: self.leader() != leader, 120, "another replica to lead")

    def stop_operator(self, sig=signal.SIGTERM):
        pass  # `down` removes the cluster with the release

    def operator_log(self):
        return self.kubectl("logs", "-n", OPERATOR_NS, "-l",
                            "app.kubernetes.io/component=operator", "--tail=60",
                            check=False).stdout[-6000:]


def make_claim(cluster, claim, ns="default"):
    """A PersistentVolumeClaim `claim` and the folder on this machine that holds its files (the
    test cluster's volumes/<ns>/<claim>/). Job pods run as uid 10001 with fsGroup 10001, which the
    kubelet applies to the claim's files (a root-owned hostPath would be OutputNotWritable)."""
    cluster.kubectl("apply", "-n", ns, "-f", "-", input=json.dumps({
        "apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": claim},
        "spec": {"accessModes": ["ReadWriteMany"],
                 "resources": {"requests": {"storage": "1Gi"}}}}))
    path = os.path.join(cluster.dir, "volumes", ns, claim)
    os.makedirs(path, exist_ok=True)
    return path


def cluster_manifest(name, data_dir, source, node_count=2, processes=2, extra=None, claim=None):
    """A manifest whose DataRefs live in one volume `data`: the PersistentVolumeClaim `claim`, or
    without one the hostPath data_dir (same paths locally)."""
    volume = ({"name": "data", "persistentVolumeClaim": {"claimName": claim}} if claim
              else {"name": "data", "hostPath": {"path": data_dir}})
    spec = {
        "entryScript": source["entryScript"],
        "sourceDirectory": {"volume": "data", "path": "code/"},
        "volumes": [volume],
        "inputs": [{"name": "documents", "type": "file",
                    "source": {"volume": "data", "path": source["input"]},
                    "pattern": "*.txt"}],
        "output": {"volume": "data", "path": "output/"},
        "miniBatchSize": source.get("miniBatchSize", "5"),
        "outputAction": "append_row",
        "appendRowFileName": "rows.txt",
        "nodeCount": node_count,
        "processCountPerNode": processes,
        "runInvocationTimeout": 30,
        "runMaxTry": 3,
    }
    spec.update(source.get("spec", {}))
    spec.update(extra or {})
    return {"apiVersion": "parallelrun.io/v1alpha1", "kind": "ParallelRunJob",
            "metadata": {"name": name}, "spec": spec}


def score_files_source():
    return {"entryScript": "score.py", "input": "data/documents/",
            "spec": {"sideInputs": [{"name": "lexicon",
                                     "source": {"volume": "data", "path": "data/lexicon/"}}],
                     "arguments": ["--lexicon", "$(sideInputs.lexicon)/words.tsv",
                                   "--min-words", "3"],
                     "errorThreshold": 5}}


def slow_source(files):
    return {"entryScript": "score.py", "input": "documents/", "miniBatchSize": "2",
            "files": files}


def make_slow_data(root, files=240):
    os.makedirs(os.path.join(root, "documents"))
    shutil.copytree(os.path.join(SLOW, "code"), os.path.join(root, "code"))
    for i in range(files):
        with open(os.path.join(root, "documents", "f%04d.txt" % i), "w") as f:
            f.write("x" * (i % 37 + 1))


def apply(cluster, manifest):
    cluster.kubectl("apply", "-f", "-", input=json.dumps(manifest))


class ExampleJobTest(unittest.TestCase):
    """The score-files example through the operator equals the same manifest run locally."""

    @classmethod
    def setUpClass(cls):
        cls.c = ChartOperatorCluster()

    @classmethod
    def tearDownClass(cls):
        cls.c.down()

    def test_example_matches_local_mode(self):
        work = tempfile.mkdtemp(prefix="prj-e2e-", dir=self.c.dir)
        cluster_data = make_claim(self.c.cluster, "score-files-data")
        local_data = os.path.join(work, "local")
        for d in (cluster_data, local_data):
            shutil.copytree(os.path.join(EXAMPLE, "code"), os.path.join(d, "code"))
            shutil.copytree(os.path.join(EXAMPLE, "data"), os.path.join(d, "data"))
        manifest = cluster_manifest("score-files", cluster_data, score_files_source(),
                                    claim="score-files-data")

        # The Python client watches the job while it runs.
        from kubernetes import client, config, watch
        api = client.CustomObjectsApi(
            config.new_client_from_config(config_file=self.c.cluster.kubeconfig))
        seen = []
        stop = threading.Event()

        def watcher():
            w = watch.Watch()
            for event in w.stream(api.list_namespaced_custom_object, "parallelrun.io",
                                  "v1alpha1", "default", "parallelrunjobs", timeout_seconds=300):
                status = event["object"].get("status") or {}
                mb = status.get("miniBatches") or {}
                if "completed" in mb:
                    seen.append((mb.get("completed"), mb.get("total")))
                if status.get("phase") in ("Succeeded", "Failed") or stop.is_set():
                    w.stop()
        t = threading.Thread(target=watcher, daemon=True)
        t.start()

        apply(self.c, manifest)
        out = self.c.kubectl("wait", "--for=condition=Complete", "prj/score-files",
                             "--timeout=300s", check=False, timeout=320)
        job = self.c.get_job("score-files")
        self.assertEqual(out.returncode, 0, "kubectl wait failed: %s\nstatus: %s\nlog:\n%s" % (
            out.stderr, json.dumps(job.get("status"), indent=1), self.c.operator_log()))
        stop.set()
        t.join(timeout=60)
        status = job["status"]

        # The same manifest in local mode (the hostPath volume is used as is).
        local_manifest = cluster_manifest("score-files", local_data, score_files_source())
        path = os.path.join(work, "local.yaml")
        with open(path, "w") as f:
            json.dump(local_manifest, f)
        local = subprocess.run([PARALLELRUN_BIN, "run", path], capture_output=True, text=True,
                               timeout=300)
        self.assertEqual(local.returncode, 0, local.stderr)
        with open(os.path.join(local_data, "output", ".parallelrun", "result.json")) as f:
            local_result = json.load(f)
        with open(os.path.join(cluster_data, "output", "rows.txt"), "rb") as f:
            cluster_rows = f.read()
        with open(os.path.join(local_data, "output", "rows.txt"), "rb") as f:
            local_rows = f.read()
        self.assertEqual(cluster_rows, local_rows)
        self.assertEqual(status["phase"], "Succeeded")
        self.assertEqual(status["items"]["succeeded"], local_result["items_succeeded"])
        self.assertEqual(status["items"]["failed"], local_result["items_failed"])
        self.assertEqual(status["items"]["total"], local_result["items_total"])
        self.assertEqual(status["miniBatches"]["total"], local_result["mini_batches_total"])
        self.assertEqual(status["miniBatches"]["failed"], local_result["mini_batches_failed"])
        self.assertEqual(status["miniBatches"]["retried"], local_result["mini_batches_retried"])
        self.assertEqual(status["progress"], "%d/%d" % (status["miniBatches"]["total"],
                                                        status["miniBatches"]["total"]))
        for cond in ("Complete", "Scheduled"):
            self.assertIn(cond, [c["type"] for c in status["conditions"]
                                 if c["status"] == "True"])

        # Progress seen by a watcher only rises, up to the total.
        completed = [c for c, _ in seen]
        self.assertTrue(completed, "the watcher saw no progress")
        self.assertEqual(completed, sorted(completed))
        self.assertEqual(completed[-1], status["miniBatches"]["total"])

        # kubectl get prj: the printer columns; describe: the events.
        table = self.c.kubectl("get", "prj").stdout
        header = table.splitlines()[0].split()
        self.assertEqual(header, ["NAME", "PHASE", "PROGRESS", "FAILED", "NODES", "ETA", "REASON",
                                  "AGE"])
        row = table.splitlines()[1].split()
        self.assertEqual(row[:3], ["score-files", "Succeeded", status["progress"]])
        described = self.c.kubectl("describe", "prj", "score-files").stdout
        self.assertIn("PodsCreated", described)
        self.assertIn("Succeeded", described)
        # kubectl logs of the coordinator shows the overview lines.
        logs = self.c.kubectl("logs", "score-files-coordinator").stdout
        self.assertIn("Processed", logs)
        self.assertIn('"level"', self.c.operator_log())  # the chart's default: JSON logs

        # The leading operator's endpoints, on its pod IP.
        import urllib.request
        ip = self.c.pod_ip(self.c.leader())
        metrics = urllib.request.urlopen(
            f"http://{ip}:{self.c.metrics_port}/metrics", timeout=10).read().decode()
        self.assertIn("parallelrun_jobs", metrics)
        self.assertIn("parallelrun_reconcile_total", metrics)
        health = urllib.request.urlopen(f"http://{ip}:{self.c.health_port}/healthz",
                                        timeout=10)
        self.assertEqual(health.status, 200)

    def test_models_scoring_job_matches_local_mode(self):
        """spec.models through the operator (issue 16): the tabular scoring script of
        tests/integration/test_models.py (Model.get_model_path, Run.get_context().log) gives
        the rows and metrics of the same manifest run locally."""
        sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
        import test_models  # noqa: E402 (its data, models and script)
        work = tempfile.mkdtemp(prefix="prj-models-", dir=self.c.dir)
        cluster_data = make_claim(self.c.cluster, "models-data")
        local_data = os.path.join(work, "local")
        for root in (cluster_data, local_data):
            job = test_models.Job(root)
            test_models.write_iris(job)
            models = test_models.write_models(job)
            job.write("code/score.py", test_models.SCORE_SCRIPT)
        for model in models:
            model["source"]["volume"] = "data"

        def models_manifest(volume):
            return {"apiVersion": "parallelrun.io/v1alpha1", "kind": "ParallelRunJob",
                    "metadata": {"name": "score-models"},
                    "spec": {"entryScript": "score.py",
                             "sourceDirectory": {"volume": "data", "path": "code/"},
                             "volumes": [volume],
                             "inputs": [{"name": "iris", "type": "tabular",
                                         "source": {"volume": "data", "path": "data/"}}],
                             "models": models,
                             "output": {"volume": "data", "path": "output/"},
                             "nodeCount": 2, "processCountPerNode": 2}}

        apply(self.c, models_manifest({"name": "data",
                                       "persistentVolumeClaim": {"claimName": "models-data"}}))
        out = self.c.kubectl("wait", "--for=condition=Complete", "prj/score-models",
                             "--timeout=300s", check=False, timeout=320)
        job = self.c.get_job("score-models")
        self.assertEqual(out.returncode, 0, "kubectl wait failed: %s\nstatus: %s\nlog:\n%s" % (
            out.stderr, json.dumps((job or {}).get("status"), indent=1), self.c.operator_log()))
        path = os.path.join(work, "local.yaml")
        with open(path, "w") as f:
            json.dump(models_manifest({"name": "data", "hostPath": {"path": local_data}}), f)
        local = subprocess.run([PARALLELRUN_BIN, "run", path], capture_output=True, text=True,
                               timeout=300)
        self.assertEqual(local.returncode, 0, local.stderr)
        rows = {}
        metrics = {}
        for where, root in (("cluster", cluster_data), ("local", local_data)):
            with open(os.path.join(root, "output", "parallel_run_step.txt"), "rb") as f:
                rows[where] = f.read()
            records = test_models.metric_records(os.path.join(root, "output", "logs", "user",
                                                              "metrics"))
            metrics[where] = sorted(json.dumps(r, sort_keys=True) for rs in records.values()
                                    for r in rs if r["kind"] != "tag")
        self.assertEqual(rows["cluster"], rows["local"])
        self.assertEqual(len(rows["cluster"].splitlines()), 90)
        self.assertEqual(metrics["cluster"], metrics["local"])
        self.assertTrue(metrics["cluster"])

    def test_finished_job_is_deleted_after_its_ttl(self):
        work = make_claim(self.c.cluster, "short-lived-data")
        make_slow_data(work, files=2)
        apply(self.c, cluster_manifest("short-lived", work, slow_source(2), node_count=1,
                                       processes=1, extra={"ttlSecondsAfterFinished": 2},
                                       claim="short-lived-data"))
        wait_until(lambda: self.c.get_job("short-lived") is None, 180,
                   "the job to be deleted after ttlSecondsAfterFinished")
        with open(os.path.join(work, "output", "rows.txt")) as f:
            self.assertEqual(len(f.read().splitlines()), 2)
        # Its children go with it (owner references).
        wait_until(lambda: self.c.kubectl(
            "get", "pods,secrets,configmaps,services", "-l", "parallelrun.io/job=short-lived",
            "-o", "name").stdout.strip() == "", 60, "the children to be collected")

    def test_misspelt_field_is_refused_by_the_api_server(self):
        manifest = cluster_manifest("typo", "/tmp", score_files_source())
        manifest["spec"]["nodeCont"] = 2
        out = self.c.kubectl("apply", "-f", "-", input=json.dumps(manifest), check=False)
        self.assertNotEqual(out.returncode, 0)
        self.assertIn("nodeCont", out.stderr)

    def test_webhook_asks_the_api_server_whether_the_user_may_read_a_mounted_config_map(self):
        # A configMap volume needs `get` on it for whoever creates the job: the webhook asks the
        # API server (a LocalSubjectAccessReview); the cluster admin may. Refusals are in
        # test_admission_e2e.
        manifest = cluster_manifest("with-config", "/tmp", score_files_source())
        manifest["spec"]["volumes"].append({"name": "cfg", "configMap": {"name": "settings"}})
        out = self.c.kubectl("apply", "--dry-run=server", "-f", "-", input=json.dumps(manifest),
                             check=False)
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertIsNone(self.c.get_job("with-config"))

    def test_semantic_error_is_refused_by_the_admission_webhook(self):
        # The chart's webhook refuses it at once (the operator's InvalidSpec, for jobs created
        # while no webhook ran, is in test_operator_production and the reconciler's unit tests).
        manifest = cluster_manifest("bad-args", "/tmp", score_files_source())
        manifest["spec"]["arguments"] = ["$(inputs.nope)"]
        out = self.c.kubectl("apply", "-f", "-", input=json.dumps(manifest), check=False)
        self.assertNotEqual(out.returncode, 0)
        self.assertIn("spec.arguments[0]", out.stderr)
        self.assertIsNone(self.c.get_job("bad-args"))


class UnschedulableTest(unittest.TestCase):
    """Waiting is explained on the job, not only on its pods."""

    @classmethod
    def setUpClass(cls):
        cls.c = ChartOperatorCluster()

    @classmethod
    def tearDownClass(cls):
        cls.c.down()

    def test_cordoned_node_says_unschedulable_then_runs(self):
        work = make_claim(self.c.cluster, "waits-data")
        make_slow_data(work, files=8)
        self.c.kubectl("cordon", "testcluster-node")
        apply(self.c, cluster_manifest("waits", work, slow_source(8), node_count=1, processes=1,
                                       claim="waits-data"))

        def unschedulable():
            job = self.c.get_job("waits") or {}
            for cond in job.get("status", {}).get("conditions", []):
                if cond["type"] == "Scheduled" and cond["status"] == "False":
                    return cond
        cond = wait_until(unschedulable, 60, "condition Scheduled=False")
        self.assertEqual(cond["reason"], "Unschedulable")
        self.assertIn("unschedulable", cond["message"])
        self.assertEqual(self.c.get_job("waits")["status"]["phase"], "Pending")
        self.c.kubectl("uncordon", "testcluster-node")
        self.c.wait_phase("waits", ("Succeeded",), timeout=240)

    def test_missing_image_says_image_pull_backoff(self):
        work = make_claim(self.c.cluster, "noimage-data")
        make_slow_data(work, files=2)
        apply(self.c, cluster_manifest("noimage", work, slow_source(2), node_count=1,
                                       processes=1, extra={"image": "parallelrun:missing"},
                                       claim="noimage-data"))

        def pull_backoff():
            job = self.c.get_job("noimage") or {}
            for cond in job.get("status", {}).get("conditions", []):
                if cond["type"] == "Scheduled" and cond["reason"] == "ImagePullBackOff":
                    return cond
        wait_until(pull_backoff, 90, "condition Scheduled reason ImagePullBackOff")
        self.c.kubectl("delete", "prj", "noimage", "--wait=true", "--timeout=60s")


    def test_missing_claim_says_failed_mount(self):
        manifest = cluster_manifest("noclaim", "/tmp", slow_source(2), node_count=1, processes=1)
        manifest["spec"]["volumes"] = [{"name": "data",
                                        "persistentVolumeClaim": {"claimName": "nope"}}]
        apply(self.c, manifest)

        def failed_mount():
            job = self.c.get_job("noclaim") or {}
            for cond in job.get("status", {}).get("conditions", []):
                if cond["type"] == "Scheduled" and cond["reason"] == "FailedMount":
                    return cond
        cond = wait_until(failed_mount, 90, "condition Scheduled reason FailedMount")
        self.assertIn("nope", cond["message"])
        self.c.kubectl("delete", "prj", "noclaim", "--wait=true", "--timeout=60s")


class FaultsTest(unittest.TestCase):
    """Pods and the operator die mid-run; every job still ends with one row per item."""

    @classmethod
    def setUpClass(cls):
        cls.c = ChartOperatorCluster()

    @classmethod
    def tearDownClass(cls):
        cls.c.down()

    def run_with_fault(self, name, fault, files=400):
        work = make_claim(self.c.cluster, name + "-data")
        make_slow_data(work, files=files)
        apply(self.c, cluster_manifest(name, work, slow_source(files), node_count=2,
                                       processes=2, claim=name + "-data"))

        def some_progress():
            job = self.c.get_job(name) or {}
            mb = job.get("status", {}).get("miniBatches", {})
            return mb.get("completed", 0) >= 5 and mb.get("completed", 0) < mb.get("total", 0)
        wait_until(some_progress, 180, f"{name} to make some progress")
        fault(name)
        job = self.c.wait_phase(name, ("Succeeded", "Failed"), timeout=300)
        self.assertEqual(job["status"]["phase"], "Succeeded", json.dumps(job["status"]))
        with open(os.path.join(work, "output", "rows.txt")) as f:
            rows = f.read().splitlines()
        names = [r.split()[0] for r in rows]
        self.assertEqual(len(names), files, "rows: %d, expected %d" % (len(names), files))
        self.assertEqual(sorted(names), sorted(set(names)), "a row is duplicated")
        self.assertEqual(job["status"]["items"]["succeeded"], files)
        return job

    def test_deleted_worker_pod_is_replaced(self):
        def delete_worker(name):
            self.c.kubectl("delete", "pod", f"{name}-worker-1", "--wait=false")
        self.run_with_fault("lose-worker", delete_worker)

    def test_killed_coordinator_is_restarted_and_resumes(self):
        def kill_coordinator(name):
            out = subprocess.run(["pgrep", "-f", f"parallelrun coordinator.*"],
                                 capture_output=True, text=True)
            pids = [int(p) for p in out.stdout.split()]
            # Only this job's coordinator: its /proc/<pid>/environ names the pod.
            mine = []
            for p in pids:
                with open(f"/proc/{p}/environ", "rb") as f:
                    if f"HOSTNAME={name}-coordinator".encode() in f.read():
                        mine.append(p)
            self.assertTrue(mine, "coordinator process not found")
            for p in mine:
                os.kill(p, signal.SIGKILL)
        job = self.run_with_fault("lose-coord", kill_coordinator)
        described = self.c.kubectl("describe", "prj", "lose-coord").stdout
        self.assertIn("CoordinatorRestarted", described)
        # The crash is counted in the job's status (the operator may not write its Secret).
        self.assertGreaterEqual(job["status"]["restarts"]["coordinator"], 1)

    def test_suspend_and_resume_mid_run(self):
        def suspend_then_resume(name):
            self.c.kubectl("patch", "prj", name, "--type=merge", "-p",
                           '{"spec": {"suspend": true}}')
            job = self.c.wait_phase(name, ("Suspended",), timeout=120)
            self.assertIn("Suspended", [c["type"] for c in job["status"]["conditions"]
                                        if c["status"] == "True"])
            wait_until(lambda: self.c.kubectl("get", "pods", "-l", f"parallelrun.io/job={name}",
                                              "-o", "name").stdout.strip() == "",
                       120, "the suspended job's pods to go")
            self.c.kubectl("patch", "prj", name, "--type=merge", "-p",
                           '{"spec": {"suspend": false}}')
        self.run_with_fault("pause", suspend_then_resume)

    def test_operator_restart_mid_run(self):
        def restart_operator(name):
            self.c.restart_operator()
        self.run_with_fault("lose-operator", restart_operator)


# Rights the chart grants that no API call of the operator uses, and why they are needed anyway.
NEEDED_WITHOUT_CALLS = {
    # Setting ownerReferences[].blockOwnerDeletion needs update on the owner's finalizers
    # subresource (OwnerReferencesPermissionEnforcement admission on real clusters).
    ("update", "parallelrun.io", "parallelrunjobs/finalizers"),
    # An Event is patched (count + 1) only when an identical one repeats (test_admin_e2e
    # suspends a job twice for it).
    ("patch", "", "events"),
}


def tearDownModule():
    """After every cluster of this module: the operator's service account used exactly the rights
    the chart grants (a missing right already failed a test with 403s; this also catches rights
    the chart grants but the operator never needs)."""
    if not AUDIT:
        return  # a single class that starts no operator cluster was run
    denied = sorted(k for k, allowed in AUDIT.items() if not allowed)
    granted = set()
    for (group, resource), verbs in chartlib.OPERATOR_RBAC.items():
        granted |= {(verb, group, resource) for verb in verbs}
    unused = sorted(granted - set(AUDIT) - NEEDED_WITHOUT_CALLS)
    problems = []
    if denied:
        problems.append("the API server refused the operator: %s" % denied)
    if set(AUDIT) - granted:
        problems.append("calls outside the chart's RBAC: %s" % sorted(set(AUDIT) - granted))
    if FULL_SUITE and unused:
        problems.append("the chart grants rights the operator never used: %s" % unused)
    if problems:
        raise AssertionError("RBAC check failed:\n  " + "\n  ".join(problems))


if __name__ == "__main__":
    unittest.main()
