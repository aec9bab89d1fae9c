"""The ParallelRunJob admission webhook end to end (issue 12, "no privilege through the operator"):
the chart installs the operator (its Deployment, webhook Service, certificate and
ValidatingWebhookConfiguration) on the test cluster, which calls the webhook over HTTPS like
kube-apiserver; users act through impersonation (`kubectl --as`).

- alice may only create ParallelRunJobs in team-a: a plain job (PVC, defaults) runs; hostPath,
  runAsUser 0, another ServiceAccount and a secretKeyRef are refused naming the field and right;
- bob, in group ml-admins, may also create pods and get the Secret `db` (through the group: the
  webhook's SubjectAccessReview carries the request's groups): the same jobs are accepted;
- a semantically invalid job is refused at `kubectl apply --dry-run=server`, naming the field;
- job pods get no service-account token; each job has a NetworkPolicy for its coordinator.

Environment (set by CTest): PARALLELRUN_BIN, OPERATOR_BIN, TESTCLUSTER_BIN.
"""

import json
import os
import shutil
import subprocess
import sys
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "tests", "cluster"))
sys.path.insert(0, os.path.join(ROOT, "tests", "chart"))
from test_e2e_kubectl import Cluster, wait_until  # noqa: E402
import chartlib  # noqa: E402
from test_operator_e2e import free_port, make_slow_data, JOB_IMAGE, PARALLELRUN_BIN  # noqa: E402

OPERATOR_NS = "parallelrun-system"
NS = "team-a"
WEBHOOK = "validate.parallelrunjobs.parallelrun.io"

RBAC = """
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: job-author, namespace: team-a}
rules:
- apiGroups: [parallelrun.io]
  resources: [parallelrunjobs]
  verbs: [create, get, list, watch, delete]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: job-authors, namespace: team-a}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: job-author}
subjects:
- {apiGroup: rbac.authorization.k8s.io, kind: User, name: alice}
- {apiGroup: rbac.authorization.k8s.io, kind: User, name: bob}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: pod-author, namespace: team-a}
rules:
- apiGroups: [""]
  resources: [pods]
  verbs: [create]
- apiGroups: [""]
  resources: [secrets]
  resourceNames: [db]
  verbs: [get]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: pod-authors, namespace: team-a}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: pod-author}
subjects:
- {apiGroup: rbac.authorization.k8s.io, kind: Group, name: ml-admins}
---
apiVersion: v1
kind: Secret
metadata: {name: db, namespace: team-a}
stringData: {password: hunter2}
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: deployer, namespace: team-a}
---
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: shared, namespace: team-a}
spec:
  accessModes: [ReadWriteMany]
  resources: {requests: {storage: 1Gi}}
"""


def job(name, **extra):
    """A plain job on the PVC `shared` (code/, documents/ and output/ in it)."""
    spec = {"entryScript": "score.py",
            "sourceDirectory": {"volume": "data", "path": "code/"},
            "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": "shared"}}],
            "inputs": [{"name": "documents", "type": "file",
                        "source": {"volume": "data", "path": "documents/"}}],
            "output": {"volume": "data", "path": "output/" + name + "/"},
            "miniBatchSize": "2", "outputAction": "append_row", "appendRowFileName": "rows.txt",
            "nodeCount": 1, "processCountPerNode": 1, "runInvocationTimeout": 30}
    spec.update(extra)
    return {"apiVersion": "parallelrun.io/v1alpha1", "kind": "ParallelRunJob",
            "metadata": {"name": name, "namespace": NS}, "spec": spec}


def with_volume(volume):
    spec = job("x")["spec"]
    return {"volumes": spec["volumes"] + [volume]}


# name -> (spec fields, the refused field, what it is needed for)
BEYOND_DEFAULTS = {
    "hostpath": (with_volume({"name": "host", "hostPath": {"path": "/"}}),
                 "spec.volumes[1].hostPath", "hostPath volumes"),
    "root": ({"securityContext": {"runAsUser": 0}},
             "spec.securityContext.runAsUser", "running as root (runAsUser 0)"),
    "account": ({"serviceAccountName": "deployer"},
                "spec.serviceAccountName", "another ServiceAccount"),
    "secret-env": ({"env": [{"name": "PW", "valueFrom": {
        "secretKeyRef": {"name": "db", "key": "password"}}}]},
        "spec.env[0].valueFrom.secretKeyRef", "secretKeyRef env"),
}


class AdmissionTest(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        os.environ["PATH"] = os.path.dirname(PARALLELRUN_BIN) + os.pathsep + os.environ["PATH"]
        cls.cluster = Cluster()
        try:
            cls.setUpCluster()
        except Exception:
            cls.cluster.down()
            raise

    @classmethod
    def setUpCluster(cls):
        c = cls.cluster
        chartlib.install_chart(c.kubeconfig, namespace=OPERATOR_NS,
                               values={"metrics.port": free_port(), "health.port": free_port(),
                                       "webhook.port": free_port(),
                                       "image.repository": JOB_IMAGE.rsplit(":", 1)[0],
                                       "image.tag": JOB_IMAGE.rsplit(":", 1)[1],
                                       "defaultJobImage": JOB_IMAGE})
        chartlib.wait_for_operator(c.kubeconfig, namespace=OPERATOR_NS)
        c.kubectl("create", "namespace", NS)
        c.kubectl("apply", "-f", "-", input=RBAC)
        volume = os.path.join(c.dir, "volumes", NS, "shared")
        os.makedirs(volume, exist_ok=True)
        make_slow_data(volume, files=4)
        # wait_for_operator also waited for the webhook to answer (failurePolicy Fail).

    @classmethod
    def tearDownClass(cls):
        cls.cluster.down()

    def create(self, user, manifest, *flags):
        groups = ["--as-group=ml-admins"] if user == "bob" else []
        return self.cluster.kubectl("--as=" + user, *groups, "create", *flags, "-f", "-",
                                    input=json.dumps(manifest), check=False)

    def operator_log(self):
        return self.cluster.kubectl("logs", "-n", OPERATOR_NS, "-l",
                                    "app.kubernetes.io/name=parallelrun", "--tail=30",
                                    check=False).stdout

    def test_job_author_runs_a_plain_job_without_token_and_behind_a_network_policy(self):
        out = self.create("alice", job("plain"))
        self.assertEqual(out.returncode, 0, out.stderr)
        c = self.cluster

        # Its pods mount no service-account token and run under the namespace's default account.
        pods = wait_until(lambda: json.loads(c.kubectl(
            "get", "pods", "-n", NS, "-l", "parallelrun.io/job=plain", "-o",
            "json").stdout)["items"], 90, "the plain job's pods")
        for pod in pods:
            self.assertIs(pod["spec"]["automountServiceAccountToken"], False)
            self.assertEqual(pod["spec"]["serviceAccountName"], "default")
            self.assertEqual(pod["spec"]["securityContext"]["runAsNonRoot"], True)

        def finished():
            got = c.kubectl("get", "prj", "plain", "-n", NS, "-o", "json", check=False)
            status = json.loads(got.stdout).get("status", {}) if got.returncode == 0 else {}
            return status.get("phase") in ("Succeeded", "Failed") and status
        status = wait_until(finished, 240, "the plain job to finish")
        self.assertEqual(status["phase"], "Succeeded",
                         json.dumps(status) + "\n" + self.operator_log())
        with open(os.path.join(c.dir, "volumes", NS, "shared", "output", "plain",
                               "rows.txt")) as f:
            self.assertEqual(len(f.read().splitlines()), 4)

        policy = json.loads(c.kubectl("get", "networkpolicy", "plain-coordinator", "-n", NS,
                                      "-o", "json").stdout)
        self.assertEqual(policy["metadata"]["ownerReferences"][0]["name"], "plain")
        self.assertEqual(policy["spec"]["podSelector"]["matchLabels"],
                         {"parallelrun.io/job": "plain", "parallelrun.io/role": "coordinator"})
        self.assertEqual(policy["spec"]["policyTypes"], ["Ingress"])
        ingress = policy["spec"]["ingress"]
        self.assertEqual(len(ingress), 1)
        self.assertEqual(ingress[0]["ports"], [{"protocol": "TCP", "port": 8443}])
        self.assertEqual(ingress[0]["from"], [
            {"podSelector": {"matchLabels": {"parallelrun.io/job": "plain"}}},
            {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": OPERATOR_NS}},
             "podSelector": {"matchLabels": {
                 "app.kubernetes.io/name": "parallelrun",
                 "app.kubernetes.io/instance": chartlib.DEFAULT_RELEASE,
                 "app.kubernetes.io/component": "operator"}}}])

    def test_job_author_is_refused_anything_beyond_the_defaults(self):
        for name, (extra, field, needed) in BEYOND_DEFAULTS.items():
            with self.subTest(name):
                out = self.create("alice", job(name, **extra))
                self.assertNotEqual(out.returncode, 0, out.stdout)
                self.assertIn('admission webhook "%s" denied the request: ' % WEBHOOK, out.stderr)
                self.assertIn('%s: user "alice" may not create pods in namespace "team-a" '
                              '(needed for %s' % (field, needed), out.stderr)
                self.assertIn("Forbidden", out.stderr)
                self.assertNotEqual(self.cluster.kubectl("get", "prj", name, "-n", NS,
                                                         check=False).returncode, 0)

    def test_pod_author_may_ask_for_more(self):
        # Without the group, bob is a job author like alice.
        out = self.cluster.kubectl("--as=bob", "create", "--dry-run=server", "-f", "-",
                                   input=json.dumps(job("nogroup", serviceAccountName="deployer")),
                                   check=False)
        self.assertIn('spec.serviceAccountName: user "bob" may not create pods', out.stderr)
        for name, (extra, _, _) in BEYOND_DEFAULTS.items():
            with self.subTest(name):
                out = self.create("bob", job(name, **extra), "--dry-run=server")
                self.assertEqual(out.returncode, 0, out.stderr)
        # A Secret bob may not read stays refused, naming it.
        other = {"env": [{"name": "K", "valueFrom": {"secretKeyRef": {"name": "other",
                                                                      "key": "k"}}}]}
        out = self.create("bob", job("other-secret", **other), "--dry-run=server")
        self.assertIn('spec.env[0].valueFrom.secretKeyRef: user "bob" may not get secret '
                      '"other" in namespace "team-a"', out.stderr)

    def test_invalid_job_is_refused_at_apply_naming_the_field(self):
        bad = job("bad-args", arguments=["$(inputs.nope)"])
        out = self.cluster.kubectl("apply", "--dry-run=server", "-f", "-",
                                   input=json.dumps(bad), check=False)
        self.assertNotEqual(out.returncode, 0)
        self.assertIn('admission webhook "%s" denied the request' % WEBHOOK, out.stderr)
        self.assertIn("spec.arguments[0]", out.stderr)

    def test_upgrade_keeps_the_serving_certificate(self):
        """Real Helm's `lookup` finds the installed Secret, so an upgrade renders the same CA and
        certificate (the caBundle keeps matching what the running pods serve)."""
        helm = shutil.which("helm")
        if helm is None:
            self.skipTest("helm is not installed")
        installed = json.loads(self.cluster.kubectl(
            "get", "secret", "-n", OPERATOR_NS, chartlib.fullname() + "-webhook-tls", "-o",
            "json").stdout)["data"]
        out = subprocess.run(
            [helm, "template", chartlib.DEFAULT_RELEASE, chartlib.CHART, "-n", OPERATOR_NS,
             "--dry-run=server", "--kubeconfig", self.cluster.kubeconfig],
            capture_output=True, text=True, timeout=120)
        self.assertEqual(out.returncode, 0, out.stderr)
        docs = [d for d in chartlib.yaml.safe_load_all(out.stdout) if d]
        secret = [d for d in docs if d["kind"] == "Secret"][0]["data"]
        config = [d for d in docs if d["kind"] == "ValidatingWebhookConfiguration"][0]
        self.assertEqual(secret, installed)
        self.assertEqual(config["webhooks"][0]["clientConfig"]["caBundle"], installed["ca.crt"])

    def test_webhook_latency_per_create(self):
        """Server-side dry-run creates through the webhook vs. the same for a ConfigMap (no
        webhook); prints the difference for the report. Fails only if it is absurd."""
        from kubernetes import client, config
        api_client = config.new_client_from_config(config_file=self.cluster.kubeconfig)
        custom = client.CustomObjectsApi(api_client)
        core = client.CoreV1Api(api_client)

        def timed(call, n=20):
            start = time.monotonic()
            for i in range(n):
                call(i)
            return (time.monotonic() - start) / n
        with_webhook = timed(lambda i: custom.create_namespaced_custom_object(
            "parallelrun.io", "v1alpha1", NS, "parallelrunjobs", job("lat%d" % i),
            dry_run="All"))
        without = timed(lambda i: core.create_namespaced_config_map(
            NS, {"metadata": {"name": "lat%d" % i}, "data": {"a": "b"}}, dry_run="All"))
        print("\nwebhook latency: %.1f ms per ParallelRunJob create, %.1f ms per ConfigMap "
              "create (no webhook)" % (with_webhook * 1000, without * 1000), file=sys.stderr)
        self.assertLess(with_webhook, 2.0)


if __name__ == "__main__":
    unittest.main()
