"""The README's install command, run with the real helm against a test cluster, then the release's
whole life: status, list, upgrade, history, rollback, uninstall with nothing of it left behind.

Run by CTest (chart.helm_lifecycle) with TESTCLUSTER_BIN and OPERATOR_BIN set; helm comes from
PATH and a missing helm fails the test. With PARALLELRUN_TEST_RUNTIME=container (as CTest runs it)
the operator pods run from the image parallelrun:<appVersion> (scripts/build-image.sh; another
with PARALLELRUN_TEST_IMAGE=repository:tag); unset,
they run `parallelrun-operator` from the build as host processes. Pods share the host network,
each on its own loopback pod IP, which the chart binds: the install adds free metrics, health and
webhook ports to the README's command and `--set replicaCount=2` (both replicas Ready, one leads).
A second test shows that `--wait` fails when the operator's pod never becomes Ready.
"""

import json
import os
import re
import shlex
import socket
import time
import unittest

import chartlib
from chartlib import CHART, REPO, helm
from test_chart import Cluster

NAMESPACE = chartlib.DEFAULT_NAMESPACE
RELEASE = chartlib.DEFAULT_RELEASE
README_COMMAND = ("helm install parallelrun charts/parallelrun -n parallelrun-system "
                  "--create-namespace --wait")
# What a namespace holds with no release in it: made by the cluster for every namespace, and
# the operator's leader-election Lease (made by the operator, not by Helm: Helm cannot remove it,
# as on any cluster).
NAMESPACE_BASELINE = {("ConfigMap", "kube-root-ca.crt"), ("ServiceAccount", "default"),
                      ("Lease", "parallelrun-operator")}


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(predicate, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.5)
    raise AssertionError("timed out after %ds waiting for %s" % (timeout, what))


class HelmLifecycleTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        chartlib.helm_path()  # fail at once when helm is missing
        operator_bin = os.environ.get("OPERATOR_BIN",
                                      os.path.join(REPO, "build", "bin", "parallelrun-operator"))
        os.environ["PATH"] = os.path.dirname(operator_bin) + os.pathsep + os.environ["PATH"]
        cls.cluster = Cluster()
        cls.k = cls.cluster.kubectl
        cls.kc = ["--kubeconfig", cls.cluster.kubeconfig]
        cls.times = {}

    @classmethod
    def tearDownClass(cls):
        cls.cluster.down()
        print("\nhelm lifecycle step times (s): " + ", ".join(
            "%s %.1f" % kv for kv in cls.times.items()))

    def timed(self, step, *args, timeout=300):
        started = time.monotonic()
        out = helm(*(list(args) + self.kc), timeout=timeout)
        self.times[step] = time.monotonic() - started
        return out

    def deployment_args(self):
        d = json.loads(self.k("-n", NAMESPACE, "get", "deployment", RELEASE, "-o", "json").stdout)
        return d["spec"]["template"]["spec"]["containers"][0]["args"], d["status"]

    def ready_pods(self):
        pods = json.loads(self.k("-n", NAMESPACE, "get", "pods", "-o", "json").stdout)["items"]
        return [p["metadata"]["name"] for p in pods
                if any(c["type"] == "Ready" and c["status"] == "True"
                       for c in p.get("status", {}).get("conditions", []))]

    def namespace_contents(self):
        kinds = self.k("api-resources", "--verbs=list", "--namespaced", "-o", "name").stdout.split()
        kinds = [k for k in kinds if not k.startswith("events")]
        items = json.loads(self.k("-n", NAMESPACE, "get", ",".join(kinds), "-o", "json",
                                  "--ignore-not-found").stdout or '{"items": []}')["items"]
        return {(i["kind"], i["metadata"]["name"]) for i in items}

    def history(self):
        out = helm("history", RELEASE, "-n", NAMESPACE, "-o", "json", *self.kc).stdout
        return [(h["revision"], h["status"], h["description"]) for h in json.loads(out)]

    def test_readme_install_then_status_list_upgrade_history_rollback_uninstall(self):
        with open(os.path.join(REPO, "README.md")) as f:
            self.assertIn(README_COMMAND, f.read().splitlines())
        install = shlex.split(README_COMMAND)[1:]
        install[install.index("charts/parallelrun")] = CHART
        metrics, health, webhook = free_port(), free_port(), free_port()
        image = os.environ.get("PARALLELRUN_TEST_IMAGE")  # the image under test, if not the default
        if image:
            install += ["--set", "image.repository=" + image.rsplit(":", 1)[0],
                        "--set", "image.tag=" + image.rsplit(":", 1)[1]]
        out = self.timed("install --wait", *install, "--timeout", "180s",
                         "--set", "metrics.port=%d" % metrics, "--set", "health.port=%d" % health,
                         "--set", "webhook.port=%d" % webhook, "--set", "replicaCount=2",
                         timeout=240)
        self.assertIn("STATUS: deployed", out.stdout)
        self.assertIn("NOTES:", out.stdout)
        args, status = self.deployment_args()
        self.assertEqual(status.get("readyReplicas"), 2, status)
        self.assertEqual(len(self.ready_pods()), 2)
        self.assertIn("--log-level=info", args)
        self.k("get", "crd", "parallelrunjobs.parallelrun.io")

        out = self.timed("status", "status", RELEASE, "-n", NAMESPACE)
        self.assertRegex(out.stdout, r"(?m)^STATUS: deployed$")
        self.assertRegex(out.stdout, r"(?m)^REVISION: 1$")
        listed = json.loads(self.timed("list -A", "list", "-A", "-o", "json").stdout)
        self.assertEqual([(r["name"], r["namespace"], r["revision"], r["status"]) for r in listed],
                         [(RELEASE, NAMESPACE, "1", "deployed")])

        out = self.timed("upgrade --wait", "upgrade", RELEASE, CHART, "-n", NAMESPACE,
                         "--reuse-values", "--set", "logLevel=debug", "--wait", "--timeout",
                         "180s", timeout=240)
        self.assertIn('Release "parallelrun" has been upgraded.', out.stdout)
        args, status = self.deployment_args()
        self.assertIn("--log-level=debug", args)
        self.assertIn("--metrics-bind-address=$(POD_IP):%d" % metrics, args)
        self.assertEqual((status.get("updatedReplicas"), status.get("readyReplicas")), (2, 2))
        self.assertEqual(self.history(), [(1, "superseded", "Install complete"),
                                          (2, "deployed", "Upgrade complete")])

        self.timed("rollback --wait", "rollback", RELEASE, "1", "-n", NAMESPACE, "--wait",
                   "--timeout", "180s", timeout=240)
        args, status = self.deployment_args()
        self.assertIn("--log-level=info", args)
        self.assertEqual(self.history()[-1], (3, "deployed", "Rollback to 1"))
        wait_until(lambda: len(self.ready_pods()) == 2, 120, "two Ready operator pods")
        secrets = json.loads(self.k("-n", NAMESPACE, "get", "secrets", "-l",
                                    "owner=helm,name=" + RELEASE, "-o", "json").stdout)["items"]
        self.assertEqual(sorted(s["metadata"]["name"] for s in secrets),
                         ["sh.helm.release.v1.parallelrun.v%d" % i for i in (1, 2, 3)])
        self.assertEqual({s["type"] for s in secrets}, {"helm.sh/release.v1"})

        out = self.timed("uninstall --wait", "uninstall", RELEASE, "-n", NAMESPACE, "--wait",
                         "--timeout", "180s", timeout=240)
        self.assertIn('release "parallelrun" uninstalled', out.stdout)
        self.assertEqual(helm("list", "-A", "-q", *self.kc).stdout.split(), [])
        wait_until(lambda: self.namespace_contents() <= NAMESPACE_BASELINE, 120,
                   "the release's objects to go")
        left = self.namespace_contents()
        self.assertLessEqual(left, NAMESPACE_BASELINE)
        self.assertIn(("ServiceAccount", "default"), left)
        cluster_scoped = self.k("get", "clusterroles,clusterrolebindings", "-o", "name").stdout
        self.assertNotRegex(cluster_scoped, re.compile(r"/%s$" % RELEASE, re.M))
        # Helm keeps the CRDs of crds/ (and with them every ParallelRunJob).
        self.k("get", "crd", "parallelrunjobs.parallelrun.io")

    def test_wait_fails_when_the_operator_never_becomes_ready(self):
        # An image the kubelet cannot pull (tag "missing": ErrImagePull): --wait must not
        # return success while the Deployment's pod is not Ready.
        args = ["install", "broken", CHART, "-n", "broken-system", "--create-namespace",
                "--set", "image.tag=missing", "--wait", "--timeout", "10s"] + self.kc
        out = helm(*args, check=False, timeout=120)
        self.assertNotEqual(out.returncode, 0, out.stdout)
        self.assertIn("context deadline exceeded", out.stderr)
        listed = json.loads(helm("list", "-n", "broken-system", "-a", "-o", "json",
                                 *self.kc).stdout)
        self.assertEqual([(r["name"], r["status"]) for r in listed], [("broken", "failed")])
        helm("uninstall", "broken", "-n", "broken-system", "--wait", *self.kc)


if __name__ == "__main__":
    unittest.main()
