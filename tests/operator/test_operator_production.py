"""The operator as a production Deployment (issue 11, part 4), on the local test cluster.

- Two replicas of the chart's Deployment are both Ready (`kubectl rollout status` completes and
  each pod's /readyz answers 200), one leads.
- A leader that gets SIGTERM releases its Lease: the standby reconciles a new job within 3 s.
- A finished job carries no finalizer: `kubectl delete prj` returns with no operator running.
- A job whose output its uid cannot write fails at once: phase Failed, reason OutputNotWritable,
  a message naming the volume, the path and the uid: end to end with a read-only hostPath; end
  to end as uid 10001 on a root-owned hostPath when the cluster's runtime honours runAsUser (a
  container runtime; skipped on the process runtime, whose pods run as root); and at the
  runtime level, `parallelrun coordinator` as uid 10001 (setpriv) on a root-owned folder.

One cluster for the module; every test starts and stops its own operators. Environment (set by
CTest): PARALLELRUN_BIN, OPERATOR_BIN, TESTCLUSTER_BIN.
"""

import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
import unittest
import urllib.error
import urllib.request

from test_operator_e2e import (OPERATOR_BIN, OPERATOR_NS, PARALLELRUN_BIN, OperatorCluster,
                               chartlib, cluster_manifest, free_port, make_slow_data,
                               slow_source, wait_until)

LEASE = "parallelrun-operator"
HANDOVER_LIMIT_S = 3.0

CLUSTER = None


def setUpModule():
    global CLUSTER
    CLUSTER = OperatorCluster()
    CLUSTER.stop_operator()  # each test runs the operators it needs


def tearDownModule():
    if CLUSTER is not None:
        CLUSTER.down()


def http_status(url):
    try:
        return urllib.request.urlopen(url, timeout=5).status
    except urllib.error.HTTPError as e:
        return e.code
    except OSError:
        return None


class Replica:
    """One operator process (as a Deployment's pod would run it), with its own log and ports."""

    def __init__(self, cluster, name):
        self.name = name
        self.health = free_port()
        self.log_path = os.path.join(cluster.dir, "operator-%s.log" % name)
        log = open(self.log_path, "a")
        self.proc = subprocess.Popen(
            [OPERATOR_BIN, "--kubeconfig", cluster.operator_kubeconfig,
             "--default-image", "parallelrun:e2e", "--metrics-bind-address", "0",
             "--health-probe-bind-address", "127.0.0.1:%d" % self.health,
             "--leader-elect", "--leader-election-namespace", OPERATOR_NS,
             "--log-format", "text"],
            stdout=log, stderr=subprocess.STDOUT)
        log.close()

    def probe(self, path):
        return http_status("http://127.0.0.1:%d%s" % (self.health, path))

    def log(self):
        with open(self.log_path) as f:
            return f.read()

    def identity(self):
        """The Lease identity it logged when it started leading, or None."""
        m = re.search(r": (\S+) is leading", self.log())
        return m.group(1) if m else None

    def stop(self, sig=signal.SIGTERM, timeout=30):
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


def lease_holder(api):
    try:
        return api.read_namespaced_lease(LEASE, OPERATOR_NS).spec.holder_identity or ""
    except Exception:  # noqa: BLE001 - no Lease yet
        return None


class ProductionTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        from kubernetes import client, config
        api_client = config.new_client_from_config(config_file=CLUSTER.cluster.kubeconfig)
        cls.leases = client.CoordinationV1Api(api_client)
        cls.jobs = client.CustomObjectsApi(api_client)
        cls.c = CLUSTER

    def setUp(self):
        self.replicas = []

    def tearDown(self):
        for r in self.replicas:
            r.stop()

    def start(self, name):
        r = Replica(self.c, name)
        self.replicas.append(r)
        return r

    def get_job(self, name):
        try:
            return self.jobs.get_namespaced_custom_object(
                "parallelrun.io", "v1alpha1", "default", "parallelrunjobs", name)
        except Exception:  # noqa: BLE001 - not found
            return None

    def create_job(self, manifest):
        self.jobs.create_namespaced_custom_object(
            "parallelrun.io", "v1alpha1", "default", "parallelrunjobs", manifest)

    def invalid_job(self, name):
        """A job the operator fails at once (InvalidSpec, no pods): cheap to reconcile."""
        manifest = cluster_manifest(name, "/tmp", slow_source(1), node_count=1, processes=1)
        manifest["spec"]["arguments"] = ["$(inputs.nope)"]
        return manifest

    def wait_no_finalizer(self, name, timeout=120):
        def gone():
            job = self.get_job(name) or {}
            return job and (job.get("status") or {}).get("phase") in ("Succeeded", "Failed") \
                and not job["metadata"].get("finalizers")
        wait_until(gone, timeout, "job %s finished without a finalizer" % name)

    def test_standby_is_ready_and_a_stopped_leader_hands_over_within_3s(self):
        a = self.start("a")
        wait_until(lambda: a.identity() and lease_holder(self.leases) == a.identity(), 60,
                   "replica a to lead")
        b = self.start("b")
        wait_until(lambda: b.probe("/readyz") == 200, 60, "the standby b to be Ready")
        # Both Ready and alive; only a leads.
        self.assertEqual(a.probe("/readyz"), 200)
        self.assertEqual(a.probe("/healthz"), 200)
        self.assertEqual(b.probe("/healthz"), 200)
        self.assertEqual(lease_holder(self.leases), a.identity())
        self.assertIsNone(b.identity())

        old = a.identity()
        t0 = time.monotonic()
        a.proc.send_signal(signal.SIGTERM)
        # Anything reconciled after the Lease leaves a is b's work (a stops reconciling first).
        wait_until(lambda: lease_holder(self.leases) not in (None, old), 10,
                   "a to release the Lease")
        released = time.monotonic() - t0
        self.create_job(self.invalid_job("after-handover"))

        def reconciled():
            job = self.get_job("after-handover") or {}
            return bool(job.get("metadata", {}).get("finalizers")
                        or (job.get("status") or {}).get("phase"))
        wait_until(reconciled, 30, "the standby to reconcile the new job")
        took = time.monotonic() - t0
        print("\nhandover: Lease released %.2f s after SIGTERM, new job reconciled by the "
              "successor %.2f s after SIGTERM" % (released, took))
        self.assertEqual(a.proc.wait(timeout=30), 0, a.log()[-3000:])
        self.assertIn("released", a.log())
        self.assertEqual(lease_holder(self.leases), b.identity())
        self.assertLess(took, HANDOVER_LIMIT_S, b.log()[-3000:])
        self.c.wait_phase("after-handover", ("Failed",), timeout=60)
        self.assertEqual(b.stop(), 0)
        self.c.kubectl("delete", "prj", "after-handover", "--timeout=30s")

    def test_finished_jobs_are_deleted_with_no_operator_running(self):
        work = tempfile.mkdtemp(prefix="prj-prod-", dir=self.c.dir)
        make_slow_data(work, files=2)
        op = self.start("solo")
        self.create_job(cluster_manifest("done-ok", work, slow_source(2), node_count=1,
                                         processes=1))
        self.create_job(self.invalid_job("done-failed"))
        self.c.wait_phase("done-ok", ("Succeeded",), timeout=180)
        for name in ("done-ok", "done-failed"):
            self.wait_no_finalizer(name)
        self.assertEqual(op.stop(), 0)
        for name in ("done-ok", "done-failed"):
            started = time.monotonic()
            out = self.c.kubectl("delete", "prj", name, "--timeout=30s", check=False,
                                 timeout=60)
            self.assertEqual(out.returncode, 0, out.stderr)
            self.assertLess(time.monotonic() - started, 20)
            self.assertIsNone(self.get_job(name))

    def test_running_job_keeps_its_finalizer_until_an_admin_removes_it(self):
        work = tempfile.mkdtemp(prefix="prj-prod-", dir=self.c.dir)
        make_slow_data(work, files=200)
        op = self.start("solo")
        self.create_job(cluster_manifest("still-running", work, slow_source(200), node_count=1,
                                         processes=1))
        self.c.wait_phase("still-running", ("Running",), timeout=120)
        self.assertEqual(self.get_job("still-running")["metadata"]["finalizers"],
                         ["parallelrun.io/finalizer"])
        self.assertEqual(op.stop(), 0)
        self.c.kubectl("delete", "prj", "still-running", "--wait=false")
        self.assertIsNotNone(self.get_job("still-running"), "the finalizer holds it")
        # docs/operations.md: what an admin does when the operator is gone for good.
        self.c.kubectl("patch", "prj", "still-running", "--type=merge", "-p",
                       '{"metadata":{"finalizers":null}}')
        wait_until(lambda: self.get_job("still-running") is None, 30, "the job to go")
        # Its pods go with it (owner references).
        wait_until(lambda: self.c.kubectl("get", "pods", "-l", "parallelrun.io/job=still-running",
                                          "-o", "name").stdout.strip() == "", 120,
                   "the pods to be collected")

    def test_output_a_job_cannot_write_fails_output_not_writable(self):
        if os.geteuid() != 0:
            self.skipTest("needs root for a read-only bind mount")
        # The process runtime runs pods as root, which no file mode stops: a read-only mount
        # does. (On a container runtime a root-owned 0755 folder and uid 10001 do the same.)
        work = tempfile.mkdtemp(prefix="prj-prod-ro-", dir=self.c.dir)
        make_slow_data(work, files=2)
        os.makedirs(os.path.join(work, "output"))
        subprocess.run(["mount", "--bind", work, work], check=True)
        self.addCleanup(subprocess.run, ["umount", "-l", work])
        subprocess.run(["mount", "-o", "remount,ro,bind", work], check=True)
        self.start("solo")
        self.create_job(cluster_manifest("read-only", work, slow_source(2), node_count=1,
                                         processes=1))
        job = self.c.wait_phase("read-only", ("Failed", "Succeeded"), timeout=120)
        status = job["status"]
        self.assertEqual(status["phase"], "Failed", json.dumps(status))
        failed = [c for c in status["conditions"] if c["type"] == "Failed"][0]
        self.assertEqual(failed["reason"], "OutputNotWritable", json.dumps(status))
        for part in ('volume "data"', 'path "output/"', "hostPath " + work, "uid ",
                     "Read-only file system"):
            self.assertIn(part, failed["message"])
        described = self.c.kubectl("describe", "prj", "read-only").stdout
        self.assertIn("OutputNotWritable", described)
        # No coordinator restarts: it failed once, for a reason a restart cannot fix.
        self.assertNotIn("CoordinatorRestarted", described)
        self.wait_no_finalizer("read-only")
        self.c.kubectl("delete", "prj", "read-only", "--timeout=60s")

    def runtime_honours_run_as_user(self):
        """True when the cluster's kubelet runs a pod as its securityContext's uid (a container
        runtime); the process runtime runs every pod as root."""
        pod = {"apiVersion": "v1", "kind": "Pod",
               "metadata": {"name": "uid-probe", "namespace": "default"},
               "spec": {"restartPolicy": "Never",
                        "securityContext": {"runAsUser": 10001, "runAsGroup": 10001},
                        "containers": [{"name": "id", "image": "parallelrun:e2e",
                                        "command": ["id", "-u"]}]}}
        self.c.kubectl("apply", "-f", "-", input=json.dumps(pod))
        try:
            wait_until(lambda: self.c.kubectl(
                "get", "pod", "uid-probe", "-o", "jsonpath={.status.phase}").stdout in (
                    "Succeeded", "Failed"), 120, "the uid probe pod to end")
            return self.c.kubectl("logs", "uid-probe").stdout.strip() == "10001"
        finally:
            self.c.kubectl("delete", "pod", "uid-probe", "--wait=false", check=False)

    def test_root_owned_host_path_fails_output_not_writable_for_uid_10001(self):
        if not self.runtime_honours_run_as_user():
            self.skipTest("pods run as root on this runtime (process runtime): "
                          "OutputNotWritableRuntimeTest covers uid 10001")
        work = tempfile.mkdtemp(prefix="prj-prod-root-", dir=self.c.dir)
        make_slow_data(work, files=2)
        os.chmod(work, 0o755)  # root-owned, not writable by uid 10001
        self.start("solo")
        self.create_job(cluster_manifest("root-owned", work, slow_source(2), node_count=1,
                                         processes=1))
        job = self.c.wait_phase("root-owned", ("Failed", "Succeeded"), timeout=180)
        failed = [c for c in job["status"].get("conditions", []) if c["type"] == "Failed"]
        self.assertTrue(failed, json.dumps(job["status"]))
        self.assertEqual(failed[0]["reason"], "OutputNotWritable")
        for part in ('volume "data"', 'path "output/"', "hostPath " + work,
                     "not writable by uid 10001", "Permission denied"):
            self.assertIn(part, failed[0]["message"])
        self.wait_no_finalizer("root-owned")
        self.c.kubectl("delete", "prj", "root-owned", "--timeout=60s")

    def test_chart_with_two_replicas_rolls_out_ready(self):
        port = free_port()
        docs = chartlib.render_docs(namespace=OPERATOR_NS,
                                    values={"replicaCount": 2, "health.port": port,
                                            "metrics.port": free_port(),
                                            "webhook.port": free_port()})
        deployment = [d for d in docs if d["kind"] == "Deployment"][0]
        # Pods of the process runtime share the host's network: each binds its own pod IP.
        container = deployment["spec"]["template"]["spec"]["containers"][0]
        container["args"] = [re.sub(r"^(--(health-probe|metrics|webhook)-bind-address=):",
                                    r"\1$(POD_IP):", a) for a in container["args"]]
        container["env"].append({"name": "POD_IP",
                                 "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}})
        name = deployment["metadata"]["name"]
        self.c.kubectl("apply", "-f", "-", input=chartlib.yaml.safe_dump_all(docs))
        try:
            started = time.monotonic()
            self.c.kubectl("-n", OPERATOR_NS, "rollout", "status", "deployment/" + name,
                           "--timeout=120s", timeout=150)
            rollout = time.monotonic() - started
            pods = json.loads(self.c.kubectl(
                "-n", OPERATOR_NS, "get", "pods", "-l", "app.kubernetes.io/name=parallelrun",
                "-o", "json").stdout)["items"]
            pods = [p for p in pods if not p["metadata"].get("deletionTimestamp")]
            self.assertEqual(len(pods), 2)
            for pod in pods:
                url = "http://%s:%d/readyz" % (pod["status"]["podIP"], port)
                wait_until(lambda: http_status(url) == 200, 60,
                           "pod %s to answer /readyz 200" % pod["metadata"]["name"])
            holder = wait_until(lambda: lease_holder(self.leases), 60, "a leader")
            leaders = [p for p in pods if holder.startswith(p["metadata"]["name"] + "_")]
            self.assertEqual(len(leaders), 1, "holder %s" % holder)
            # Deleting the leader's pod (the kubelet sends SIGTERM) hands the Lease over: to
            # the standby, or to the ReplicaSet's replacement pod if it starts first.
            leader = leaders[0]["metadata"]["name"]
            t0 = time.monotonic()
            self.c.kubectl("-n", OPERATOR_NS, "delete", "pod", leader, "--wait=false")

            def new_holder():
                h = lease_holder(self.leases)
                return h and not h.startswith(leader + "_") and h
            holder = wait_until(new_holder, 30, "another replica to take the Lease")
            took = time.monotonic() - t0
            print("\nchart: 2 replicas rolled out in %.1f s, both Ready; leader pod deleted, "
                  "%s leads %.2f s after the delete request" % (rollout, holder.split("_")[0],
                                                                 took))
            self.assertLess(took, 5.0, "kubectl delete + the kubelet's SIGTERM + hand-over")
        finally:
            self.c.kubectl("-n", OPERATOR_NS, "delete", "deployment", name, "--timeout=60s",
                           check=False, timeout=90)
            # The chart's admission webhook (failurePolicy Fail) goes with its operator pods.
            for webhook in [d for d in docs if d["kind"] == "ValidatingWebhookConfiguration"]:
                self.c.kubectl("delete", "validatingwebhookconfiguration",
                               webhook["metadata"]["name"], check=False)
            wait_until(lambda: self.c.kubectl(
                "-n", OPERATOR_NS, "get", "pods", "-l", "app.kubernetes.io/name=parallelrun",
                "-o", "name").stdout.strip() == "", 90, "the chart's pods to go")


class OutputNotWritableRuntimeTest(unittest.TestCase):
    """`parallelrun coordinator` as uid 10001 on a root-owned 0755 hostPath: what a pod with the
    default security context meets on a real node."""

    def test_coordinator_as_uid_10001_fails_at_once_with_the_reason(self):
        if os.geteuid() != 0 or shutil.which("setpriv") is None:
            self.skipTest("needs root and setpriv to run as uid 10001")
        work = tempfile.mkdtemp(prefix="prj-uid-")
        self.addCleanup(shutil.rmtree, work, True)
        os.chmod(work, 0o755)
        data = os.path.join(work, "data")  # root-owned 0755: the hostPath
        os.makedirs(os.path.join(data, "input"))
        os.makedirs(os.path.join(data, "code"))
        with open(os.path.join(data, "input", "a.txt"), "w") as f:
            f.write("a")
        shutil.copy(os.path.join(os.path.dirname(__file__), "testdata", "slow", "code",
                                 "score.py"), os.path.join(data, "code"))
        job_dir = os.path.join(work, "job")  # the uid's own files: spec, token, message
        os.makedirs(job_dir)
        manifest = cluster_manifest("no-write", data, {"entryScript": "score.py",
                                                       "input": "input/"}, node_count=1,
                                    processes=1)
        with open(os.path.join(job_dir, "job.json"), "w") as f:
            json.dump(manifest, f)
        with open(os.path.join(job_dir, "token"), "w") as f:
            f.write("t" * 32)
        os.chown(job_dir, 10001, 10001)
        for name in ("job.json", "token"):
            os.chown(os.path.join(job_dir, name), 10001, 10001)
        message_file = os.path.join(job_dir, "termination-log")
        started = time.monotonic()
        out = subprocess.run(
            ["setpriv", "--reuid", "10001", "--regid", "10001", "--clear-groups",
             PARALLELRUN_BIN, "coordinator", "--spec", os.path.join(job_dir, "job.json"),
             "--listen", "127.0.0.1:0", "--token-file", os.path.join(job_dir, "token"),
             "--paths", "local", "--termination-log", message_file],
            capture_output=True, text=True, timeout=60)
        took = time.monotonic() - started
        self.assertEqual(out.returncode, 1, out.stderr)
        self.assertLess(took, 10, "fails at once")
        with open(message_file) as f:
            summary = json.load(f)
        self.assertEqual(summary["phase"], "Failed")
        self.assertEqual(summary["reason"], "OutputNotWritable")
        for part in ('volume "data"', 'path "output/"', "hostPath " + data,
                     "not writable by uid 10001", "Permission denied", "chown -R 10001"):
            self.assertIn(part, summary["message"])
        self.assertIn("OutputNotWritable", out.stderr)
        self.assertEqual(sorted(os.listdir(data)), ["code", "input"], "nothing was written")


if __name__ == "__main__":
    unittest.main()
