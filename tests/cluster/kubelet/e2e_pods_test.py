"""End-to-end tests of the process kubelet through the real kubectl.

Every test starts its own cluster in a temporary state folder (`testcluster up`) and always stops
it (`testcluster down`); every kubectl call gets a fresh --cache-dir. Run by CTest
(cluster.e2e_pods) with TESTCLUSTER_BIN pointing at the built binary; pods find their commands on
the PATH that `up` was started with (the binary's folder first, as tests point it at build/bin).
"""

import json
import os
import shutil
import signal
import subprocess
import tempfile
import textwrap
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
WRAPPER = os.path.join(HERE, "..", "testcluster")
KUBECTL = os.environ.get("KUBECTL", "/usr/bin/kubectl")


def wait_until(predicate, timeout=30.0, what="condition"):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(0.05)
    raise AssertionError("timed out waiting for %s (last: %r)" % (what, last))


def read_file(path):
    """The file's text, or None while it does not exist."""
    try:
        with open(path) as f:
            return f.read()
    except FileNotFoundError:
        return None


class Cluster:
    """A running test cluster in a temporary folder."""

    def __init__(self, runtime=None):
        self.dir = tempfile.mkdtemp(prefix="testcluster-pods-")
        env = dict(os.environ)
        binary = os.environ.get("TESTCLUSTER_BIN")
        if binary:
            env["PATH"] = os.path.dirname(os.path.abspath(binary)) + ":" + env.get("PATH", "")
        extra = ["--runtime", runtime] if runtime else []
        out = subprocess.run([WRAPPER, "up", "--state", self.dir] + extra, capture_output=True,
                             text=True, timeout=60, env=env)
        if out.returncode != 0:
            shutil.rmtree(self.dir, ignore_errors=True)
            raise RuntimeError("testcluster up failed: %s %s" % (out.stdout, out.stderr))
        self.kubeconfig = out.stdout.strip().splitlines()[-1]

    def down(self):
        subprocess.run([WRAPPER, "down", "--state", self.dir], capture_output=True, timeout=60)
        shutil.rmtree(self.dir, ignore_errors=True)

    def kubectl(self, *args, check=True, timeout=120, input=None):
        cache = tempfile.mkdtemp(prefix="kc-", dir=self.dir)
        cmd = [KUBECTL, "--kubeconfig", self.kubeconfig, "--cache-dir", cache] + list(args)
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, input=input)
        if check and out.returncode != 0:
            raise AssertionError("kubectl %s failed (%d): %s %s" % (" ".join(args), out.returncode,
                                                                   out.stdout, out.stderr))
        return out


class PodTestCase(unittest.TestCase):
    def setUp(self):
        self.cluster = Cluster()
        self.addCleanup(self.cluster.down)
        # Host folder for files that pods leave for the test to read.
        self.shared = os.path.join(self.cluster.dir, "shared")
        os.makedirs(self.shared)

    def k(self, *args, **kwargs):
        return self.cluster.kubectl(*args, **kwargs)

    def apply(self, manifest):
        return self.k("apply", "-f", "-", input=textwrap.dedent(manifest))

    def pod(self, name):
        out = self.k("get", "pod", name, "-o", "json", check=False)
        return json.loads(out.stdout) if out.returncode == 0 else None

    def phase(self, name):
        pod = self.pod(name)
        return pod.get("status", {}).get("phase") if pod else None

    def events(self, name):
        out = self.k("get", "events", "--field-selector", "involvedObject.name=" + name, "-o", "json")
        return json.loads(out.stdout)["items"]

    def wait_event(self, name, reason):
        return wait_until(lambda: [e for e in self.events(name) if e["reason"] == reason],
                          what="event %s on %s" % (reason, name))[0]

    def shell_pod(self, name, script, restart="Never", grace=30):
        self.apply("""
            apiVersion: v1
            kind: Pod
            metadata:
              name: %s
              labels: {app: %s}
            spec:
              restartPolicy: %s
              terminationGracePeriodSeconds: %d
              volumes:
              - name: shared
                hostPath: {path: %s}
              containers:
              - name: main
                image: busybox:1.36
                command: ["sh", "-c", %s]
                volumeMounts:
                - {name: shared, mountPath: /shared}
            """ % (name, name, restart, grace, self.shared, json.dumps(script)))


class PodLifecycleTest(PodTestCase):
    def test_shell_pod_logs_exit_code_and_termination_message_come_back(self):
        self.shell_pod("job", "echo line one; echo line two >&2; "
                              "echo 'finished: 3 items' > /dev/termination-log; exit 3")
        self.k("wait", "--for=jsonpath={.status.phase}=Failed", "pod/job", "--timeout=30s")
        self.assertEqual(self.k("logs", "job").stdout, "line one\nline two\n")
        terminated = self.pod("job")["status"]["containerStatuses"][0]["state"]["terminated"]
        self.assertEqual(terminated["exitCode"], 3)
        self.assertEqual(terminated["reason"], "Error")
        self.assertEqual(terminated["message"], "finished: 3 items\n")
        table = self.k("get", "pod", "job").stdout
        self.assertIn("Error", table)
        described = self.k("describe", "pod", "job").stdout
        self.assertIn("Exit Code:    3", described)
        self.assertIn("Successfully assigned default/job to", described)
        self.assertIn("Started container main", described)

    def test_pod_ip_env_and_service_account_work_in_cluster(self):
        self.apply("""
            apiVersion: v1
            kind: ConfigMap
            metadata: {name: settings}
            data: {mode: fast}
            ---
            apiVersion: v1
            kind: Secret
            metadata: {name: creds}
            stringData: {password: s3cr3t}
            """)
        self.apply("""
            apiVersion: v1
            kind: Pod
            metadata: {name: env2}
            spec:
              restartPolicy: Never
              volumes:
              - {name: shared, hostPath: {path: %s}}
              - {name: creds, secret: {secretName: creds}}
              containers:
              - name: main
                image: busybox
                command: ["sh", "-c", "echo \\"$POD_IP $POD_NAME $MODE\\" > /shared/env; cat /etc/creds/password > /shared/secret; hostname > /shared/hostname; kubectl --cache-dir /tmp/kc-$$$$ get pods > /shared/kubectl 2>&1; true"]
                env:
                - {name: POD_IP, valueFrom: {fieldRef: {fieldPath: status.podIP}}}
                - {name: POD_NAME, valueFrom: {fieldRef: {fieldPath: metadata.name}}}
                - {name: MODE, valueFrom: {configMapKeyRef: {name: settings, key: mode}}}
                volumeMounts:
                - {name: shared, mountPath: /shared}
                - {name: creds, mountPath: /etc/creds}
            """ % self.shared)
        self.k("wait", "--for=jsonpath={.status.phase}=Succeeded", "pod/env2", "--timeout=60s")
        ip = self.pod("env2")["status"]["podIP"]
        self.assertTrue(ip.startswith("127.") and not ip.startswith("127.0.0."), ip)
        with open(os.path.join(self.shared, "env")) as f:
            self.assertEqual(f.read(), "%s env2 fast\n" % ip)
        with open(os.path.join(self.shared, "secret")) as f:
            self.assertEqual(f.read(), "s3cr3t")
        with open(os.path.join(self.shared, "hostname")) as f:
            self.assertEqual(f.read(), "env2\n")
        # In-cluster kubectl: service-account token, ca.crt and KUBERNETES_SERVICE_HOST/PORT
        # reach the API server, which applies RBAC to the service account.
        with open(os.path.join(self.shared, "kubectl")) as f:
            self.assertIn('User "system:serviceaccount:default:default" cannot list resource "pods"',
                          f.read())

    def test_delete_pod_sends_sigterm_to_the_process_group(self):
        self.shell_pod("server", "trap 'echo got SIGTERM > /shared/term; exit 0' TERM; "
                                 "while :; do sleep 0.05; done", restart="Always")
        self.k("wait", "--for=condition=Ready", "pod/server", "--timeout=30s")
        started = time.monotonic()
        self.k("delete", "pod", "server", "--timeout=60s")
        self.assertLess(time.monotonic() - started, 20)  # well within the 30 s grace period
        with open(os.path.join(self.shared, "term")) as f:
            self.assertEqual(f.read(), "got SIGTERM\n")
        self.assertIsNone(self.pod("server"))

    def test_delete_pod_ignoring_sigterm_is_killed_after_the_grace_period(self):
        self.shell_pod("stubborn", "trap '' TERM; echo $$$$ > /shared/pid; "
                                   "while :; do sleep 0.05; done", restart="Always", grace=1)
        self.k("wait", "--for=condition=Ready", "pod/stubborn", "--timeout=30s")
        pid = int(wait_until(lambda: (read_file(os.path.join(self.shared, "pid")) or "").strip()))
        self.k("delete", "pod", "stubborn", "--timeout=60s")
        with self.assertRaises(ProcessLookupError):
            os.kill(pid, 0)

    def test_restart_on_failure_counts_restarts_and_keeps_previous_logs(self):
        self.shell_pod("flaky", "n=$(cat /shared/n 2>/dev/null || echo 0); echo $((n+1)) > /shared/n; "
                                "echo attempt $n; [ $n -ge 1 ]", restart="OnFailure")
        self.k("wait", "--for=jsonpath={.status.phase}=Succeeded", "pod/flaky", "--timeout=60s")
        status = self.pod("flaky")["status"]["containerStatuses"][0]
        self.assertEqual(status["restartCount"], 1)
        self.assertEqual(status["lastState"]["terminated"]["exitCode"], 1)
        self.assertEqual(self.k("logs", "flaky").stdout, "attempt 1\n")
        self.assertEqual(self.k("logs", "flaky", "--previous").stdout, "attempt 0\n")

    def test_down_stops_every_pod_process(self):
        self.shell_pod("sleeper", "trap '' TERM; echo $$$$ > /shared/pid; "
                                  "while :; do sleep 0.05; done", restart="Always")
        pid_file = os.path.join(self.shared, "pid")
        pid = int(wait_until(lambda: (read_file(pid_file) or "").strip()))
        subprocess.run([WRAPPER, "down", "--state", self.cluster.dir], capture_output=True,
                       timeout=60, check=True)
        with self.assertRaises(ProcessLookupError):
            os.kill(pid, 0)


class PodWaitingTest(PodTestCase):
    def test_missing_config_map_gives_failed_mount_and_pending(self):
        self.apply("""
            apiVersion: v1
            kind: Pod
            metadata: {name: mounts}
            spec:
              restartPolicy: Never
              volumes:
              - {name: cfg, configMap: {name: not-there}}
              containers:
              - name: main
                image: busybox
                command: ["cat", "/etc/cfg/mode"]
                volumeMounts: [{name: cfg, mountPath: /etc/cfg}]
            """)
        event = self.wait_event("mounts", "FailedMount")
        self.assertEqual(event["type"], "Warning")
        self.assertEqual(event["message"],
                         'MountVolume.SetUp failed for volume "cfg" : configmap "not-there" not found')
        self.assertEqual(event["involvedObject"]["uid"], self.pod("mounts")["metadata"]["uid"])
        self.assertEqual(self.phase("mounts"), "Pending")
        self.assertIn("FailedMount", self.k("describe", "pod", "mounts").stdout)
        # Once the ConfigMap exists the pod runs.
        self.apply("""
            apiVersion: v1
            kind: ConfigMap
            metadata: {name: not-there}
            data: {mode: late}
            """)
        self.k("wait", "--for=jsonpath={.status.phase}=Succeeded", "pod/mounts", "--timeout=60s")
        self.assertEqual(self.k("logs", "mounts").stdout, "late")

    def test_image_tag_missing_gives_image_pull_back_off(self):
        self.apply("""
            apiVersion: v1
            kind: Pod
            metadata: {name: noimage}
            spec:
              containers:
              - {name: main, image: "example.com/tool:missing", command: ["true"]}
            """)
        self.k("wait", "--for=jsonpath={.status.containerStatuses[0].state.waiting.reason}=ImagePullBackOff",
               "pod/noimage", "--timeout=30s")
        self.assertEqual(self.phase("noimage"), "Pending")
        self.assertIn("ImagePullBackOff", self.k("get", "pod", "noimage").stdout)
        self.wait_event("noimage", "BackOff")

    def test_cordoned_node_leaves_pods_pending_unschedulable(self):
        node = self.k("get", "nodes", "-o", "jsonpath={.items[0].metadata.name}").stdout
        self.k("cordon", node)
        self.apply("""
            apiVersion: v1
            kind: Pod
            metadata: {name: waiting}
            spec:
              restartPolicy: Never
              containers:
              - {name: main, image: busybox, command: ["true"]}
            """)
        self.k("wait", "--for=condition=PodScheduled=false", "pod/waiting", "--timeout=30s")
        pod = self.pod("waiting")
        self.assertEqual(pod["status"]["phase"], "Pending")
        cond = [c for c in pod["status"]["conditions"] if c["type"] == "PodScheduled"][0]
        self.assertEqual(cond["reason"], "Unschedulable")
        self.assertEqual(cond["message"], "0/1 nodes are available: 1 node(s) were unschedulable.")
        event = self.wait_event("waiting", "FailedScheduling")
        self.assertEqual(event["message"], cond["message"])
        self.k("uncordon", node)
        self.k("wait", "--for=jsonpath={.status.phase}=Succeeded", "pod/waiting", "--timeout=30s")

    def test_node_selector_that_does_not_match_is_unschedulable(self):
        self.apply("""
            apiVersion: v1
            kind: Pod
            metadata: {name: picky}
            spec:
              nodeSelector: {disktype: ssd}
              containers:
              - {name: main, image: busybox, command: ["true"]}
            """)
        self.k("wait", "--for=condition=PodScheduled=false", "pod/picky", "--timeout=30s")
        event = self.wait_event("picky", "FailedScheduling")
        self.assertIn("didn't match Pod's node affinity/selector", event["message"])


class DeploymentTest(PodTestCase):
    def test_deployment_pod_comes_up_and_is_replaced_when_deleted(self):
        self.apply("""
            apiVersion: apps/v1
            kind: Deployment
            metadata: {name: web}
            spec:
              replicas: 1
              selector: {matchLabels: {app: web}}
              template:
                metadata: {labels: {app: web}}
                spec:
                  terminationGracePeriodSeconds: 5
                  containers:
                  - name: web
                    image: busybox
                    command: ["sh", "-c", "trap 'exit 0' TERM; echo serving; while :; do sleep 0.05; done"]
            """)
        self.k("wait", "--for=condition=Available", "deployment/web", "--timeout=60s")
        first = json.loads(self.k("get", "pods", "-l", "app=web", "-o", "json").stdout)["items"]
        self.assertEqual(len(first), 1)
        first_name = first[0]["metadata"]["name"]
        self.assertEqual(first[0]["status"]["phase"], "Running")
        owner = first[0]["metadata"]["ownerReferences"][0]  # the Deployment's ReplicaSet
        self.assertEqual(owner["kind"], "ReplicaSet")
        self.assertRegex(owner["name"], r"^web-[a-z0-9]+$")
        self.assertEqual(self.k("logs", first_name).stdout, "serving\n")

        self.k("delete", "pod", first_name, "--timeout=60s")

        def replacement():
            pods = json.loads(self.k("get", "pods", "-l", "app=web", "-o", "json").stdout)["items"]
            return [p for p in pods if p["metadata"]["name"] != first_name
                    and p.get("status", {}).get("phase") == "Running"]
        second = wait_until(replacement, what="a replacement pod")
        self.assertNotEqual(second[0]["status"]["podIP"], "")
        self.k("wait", "--for=condition=Available", "deployment/web", "--timeout=60s")
        status = json.loads(self.k("get", "deployment", "web", "-o", "json").stdout)["status"]
        self.assertEqual(status.get("readyReplicas"), 1)


class ServiceDnsTest(PodTestCase):
    def test_headless_service_and_pod_hostnames_resolve_through_etc_hosts(self):
        self.apply("""
            apiVersion: v1
            kind: Service
            metadata: {name: db}
            spec:
              clusterIP: None
              selector: {app: db}
              ports: [{port: 5432}]
            ---
            apiVersion: v1
            kind: Pod
            metadata:
              name: db-0
              labels: {app: db}
            spec:
              hostname: primary
              subdomain: db
              containers:
              - {name: main, image: busybox, command: ["sh", "-c", "while :; do sleep 0.05; done"]}
            """)
        self.k("wait", "--for=condition=Ready", "pod/db-0", "--timeout=30s")
        db_ip = self.pod("db-0")["status"]["podIP"]
        self.shell_pod("client",
                       "until grep -q 'db.default.svc.cluster.local' /etc/hosts; do sleep 0.05; done; "
                       "getent hosts db > /shared/short; getent hosts db.default.svc.cluster.local > /shared/long; "
                       "getent hosts primary.db.default.svc.cluster.local > /shared/host; "
                       "getent hosts kubernetes.default.svc > /shared/api")
        self.k("wait", "--for=jsonpath={.status.phase}=Succeeded", "pod/client", "--timeout=60s")
        for name in ("short", "long", "host"):
            with open(os.path.join(self.shared, name)) as f:
                self.assertTrue(f.read().startswith(db_ip + " "), name)
        with open(os.path.join(self.shared, "api")) as f:
            self.assertTrue(f.read().startswith("127.0.0.1 "))


if __name__ == "__main__":
    unittest.main()
