"""End-to-end tests of the local test cluster with the real kubectl and the official Python client.

Each test class starts its own cluster in a temporary state folder (`testcluster up`) and always
stops it (`testcluster down`). Every kubectl call gets a fresh --cache-dir, so discovery is never
served from a cache of another cluster. Run by CTest (cluster.e2e_kubectl) with TESTCLUSTER_BIN
pointing at the built binary.
"""

import json
import os
import shutil
import subprocess
import tempfile
import threading
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
TESTDATA = os.path.join(HERE, "testdata")
WRAPPER = os.path.join(HERE, "testcluster")
KUBECTL = os.environ.get("KUBECTL", "/usr/bin/kubectl")


def testdata(name):
    return os.path.join(TESTDATA, name)


class Cluster:
    """A running test cluster in a temporary folder."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="testcluster-e2e-")
        started = time.monotonic()
        # PARALLELRUN_TEST_RUNTIME=container runs the pods of every cluster started here as
        # podman containers (testcluster up --runtime container); default: host processes.
        runtime = os.environ.get("PARALLELRUN_TEST_RUNTIME", "")
        extra = ["--runtime", runtime] if runtime else []
        out = subprocess.run([WRAPPER, "up", "--state", self.dir] + extra, capture_output=True,
                             text=True, timeout=60)
        self.startup_seconds = time.monotonic() - started
        if out.returncode != 0:
            raise RuntimeError("testcluster up failed: %s %s" % (out.stdout, out.stderr))
        self.kubeconfig = out.stdout.strip().splitlines()[-1]

    def down(self):
        subprocess.run([WRAPPER, "down", "--state", self.dir], capture_output=True, timeout=60)
        shutil.rmtree(self.dir, ignore_errors=True)

    def kubectl(self, *args, check=True, timeout=60, input=None):
        cache = tempfile.mkdtemp(prefix="kc-", dir=self.dir)
        cmd = [KUBECTL, "--kubeconfig", self.kubeconfig, "--cache-dir", cache] + list(args)
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, input=input)
        if check and out.returncode != 0:
            raise AssertionError("%s failed (%d): %s %s" % (" ".join(args), out.returncode,
                                                           out.stdout, out.stderr))
        return out

    def popen_kubectl(self, *args):
        cache = tempfile.mkdtemp(prefix="kc-", dir=self.dir)
        cmd = [KUBECTL, "--kubeconfig", self.kubeconfig, "--cache-dir", cache] + list(args)
        return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_until(predicate, timeout=30.0, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError("timed out waiting for " + what)


class ClusterTestCase(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.cluster = Cluster()
        try:
            cls.cluster.kubectl("apply", "-f", testdata("crd-gadget.yaml"))
            cls.cluster.kubectl("wait", "--for=condition=Established",
                                "crd/gadgets.test.parallelrun.io", "--timeout=30s")
        except Exception:
            cls.cluster.down()
            raise

    @classmethod
    def tearDownClass(cls):
        cls.cluster.down()

    def k(self, *args, **kwargs):
        return self.cluster.kubectl(*args, **kwargs)

    def gadget(self, name):
        return json.loads(self.k("get", "gadget", name, "-o", "json").stdout)


class KubectlTest(ClusterTestCase):
    def test_version_selects_kubectl_1_32_and_starts_fast(self):
        out = json.loads(self.k("version", "-o", "json").stdout)
        self.assertEqual(out["serverVersion"]["minor"], "32")
        self.assertLess(self.cluster.startup_seconds, 5.0)

    def test_unauthenticated_request_gets_401(self):
        out = self.k("get", "ns", "--token=wrong", check=False)
        self.assertNotEqual(out.returncode, 0)
        self.assertIn("provide credentials", out.stderr)

    def test_apply_get_yaml_and_printer_columns(self):
        self.assertIn("gadget.test.parallelrun.io/g1 created",
                      self.k("apply", "-f", testdata("gadget-g1.yaml")).stdout)
        table = self.k("get", "gadgets").stdout.splitlines()
        self.assertEqual(table[0].split(), ["NAME", "PHASE", "SIZE", "AGE"])
        self.assertEqual(table[1].split()[:2], ["g1", "3"])
        self.assertIn("g1", self.k("get", "gd").stdout)
        obj = self.gadget("g1")
        self.assertEqual(obj["spec"]["color"], "red")  # schema default
        self.assertEqual(obj["spec"]["extra"], {"anything": [1, 2]})  # preserved unknowns
        self.assertEqual(obj["metadata"]["generation"], 1)
        yaml_out = self.k("get", "gadget", "g1", "-o", "yaml").stdout
        self.assertIn("kind: Gadget", yaml_out)
        self.assertIn("last-applied-configuration", yaml_out)
        # Client-side apply of a change: a merge patch that bumps the generation.
        self.assertIn("configured", self.k("apply", "-f", testdata("gadget-g1-changed.yaml")).stdout)
        obj = self.gadget("g1")
        self.assertEqual((obj["spec"]["size"], obj["spec"]["color"]), (5, "blue"))
        self.assertNotIn("extra", obj["spec"])
        self.assertEqual(obj["metadata"]["generation"], 2)
        self.assertIn("unchanged", self.k("apply", "-f", testdata("gadget-g1-changed.yaml")).stdout)

    def test_typo_field_is_rejected_like_a_real_server(self):
        out = self.k("apply", "-f", testdata("gadget-typo.yaml"), check=False)
        self.assertEqual(out.returncode, 1)
        self.assertIn('Error from server (BadRequest): error when creating', out.stderr)
        self.assertIn('Gadget in version "v1" cannot be handled as a Gadget: strict decoding '
                      'error: unknown field "spec.colr"', out.stderr)

    def test_schema_violations_are_reported_together(self):
        out = self.k("apply", "-f", testdata("gadget-invalid.yaml"), check=False)
        self.assertEqual(out.returncode, 1)
        self.assertIn('The Gadget "g-invalid" is invalid', out.stderr)
        self.assertIn("spec.size: Invalid value: 11: spec.size in body should be less than or "
                      "equal to 10", out.stderr)
        self.assertIn('spec.color: Unsupported value: "pink"', out.stderr)
        self.assertIn("spec.label in body should match '^[a-z]+$'", out.stderr)

    def test_patch_merge_json_status_and_wait(self):
        self.k("apply", "-f", "-", input=json.dumps({
            "apiVersion": "test.parallelrun.io/v1", "kind": "Gadget",
            "metadata": {"name": "g-patch"}, "spec": {"size": 2}}))
        self.k("patch", "gadget", "g-patch", "--type=merge", "-p", '{"spec":{"color":"green"}}')
        self.k("patch", "gadget", "g-patch", "--type=json",
               "-p", '[{"op":"replace","path":"/spec/size","value":4}]')
        obj = self.gadget("g-patch")
        self.assertEqual((obj["spec"]["size"], obj["spec"]["color"]), (4, "green"))
        self.assertEqual(obj["metadata"]["generation"], 3)
        smp = self.k("patch", "gadget", "g-patch", "-p", '{"spec":{"size":1}}', check=False)
        self.assertIn("application/strategic-merge-patch+json is not supported", smp.stderr)
        # A condition observed at an older generation does not satisfy wait.
        self.k("patch", "gadget", "g-patch", "--subresource=status", "--type=merge", "-p",
               json.dumps({"status": {"phase": "Ready", "conditions": [
                   {"type": "Ready", "status": "True", "observedGeneration": 2}]}}))
        stale = self.k("wait", "--for=condition=Ready", "gadget/g-patch", "--timeout=1s",
                       check=False)
        self.assertNotEqual(stale.returncode, 0)
        waiter = self.cluster.popen_kubectl("wait", "--for=condition=Ready", "gadget/g-patch",
                                            "--timeout=30s")
        self.k("patch", "gadget", "g-patch", "--subresource=status", "--type=merge", "-p",
               json.dumps({"status": {"conditions": [
                   {"type": "Ready", "status": "True", "observedGeneration": 3}]}}))
        out, err = waiter.communicate(timeout=60)
        self.assertEqual(waiter.returncode, 0, err)
        self.assertIn("condition met", out)
        # Status writes do not bump the generation; spec changes through /status are ignored.
        obj = self.gadget("g-patch")
        self.assertEqual(obj["metadata"]["generation"], 3)
        self.k("wait", "--for=jsonpath={.status.phase}=Ready", "gadget/g-patch", "--timeout=10s")

    def test_server_side_apply_creates_then_merges(self):
        body = {"apiVersion": "test.parallelrun.io/v1", "kind": "Gadget",
                "metadata": {"name": "g-ssa", "labels": {"via": "ssa"}}, "spec": {"size": 6}}
        out = self.k("apply", "--server-side", "-f", "-", input=json.dumps(body)).stdout
        self.assertIn("serverside-applied", out)
        body["spec"]["size"] = 7
        self.k("apply", "--server-side", "-f", "-", input=json.dumps(body))
        obj = self.gadget("g-ssa")
        self.assertEqual((obj["spec"]["size"], obj["metadata"]["labels"]["via"]), (7, "ssa"))

    def test_label_selectors_and_field_selectors(self):
        for name, tier in (("g-a", "gold"), ("g-b", "silver")):
            self.k("apply", "-f", "-", input=json.dumps({
                "apiVersion": "test.parallelrun.io/v1", "kind": "Gadget",
                "metadata": {"name": name}, "spec": {"size": 1}}))
            self.k("label", "gadget", name, "tier=" + tier)
        names = self.k("get", "gadgets", "-l", "tier=gold", "-o", "name").stdout.split()
        self.assertEqual(names, ["gadget.test.parallelrun.io/g-a"])
        names = self.k("get", "gadgets", "-l", "tier in (gold,silver)", "-o", "name").stdout.split()
        self.assertEqual(len(names), 2)
        names = self.k("get", "gadgets", "--field-selector", "metadata.name=g-b",
                       "-o", "name").stdout.split()
        self.assertEqual(names, ["gadget.test.parallelrun.io/g-b"])
        chunked = self.k("get", "gadgets", "-A", "--chunk-size=1", "-o", "name").stdout.split()
        self.assertGreaterEqual(len(chunked), 2)

    def test_get_watch_prints_rows_as_they_change(self):
        self.k("apply", "-f", "-", input=json.dumps({
            "apiVersion": "test.parallelrun.io/v1", "kind": "Gadget",
            "metadata": {"name": "g-watch"}, "spec": {"size": 1}}))
        watcher = self.cluster.popen_kubectl("get", "gadget", "g-watch", "-w",
                                             "--request-timeout=20s")
        lines = []
        reader = threading.Thread(target=lambda: lines.extend(watcher.stdout))
        reader.start()
        wait_until(lambda: any("g-watch" in l for l in lines), what="the first row")
        self.k("patch", "gadget", "g-watch", "--subresource=status", "--type=merge",
               "-p", '{"status":{"phase":"Watched"}}')
        try:
            wait_until(lambda: any("Watched" in l for l in lines), what="the watched row")
        finally:
            watcher.terminate()
            reader.join(timeout=30)
            watcher.wait(timeout=30)
            watcher.stdout.close()
            watcher.stderr.close()
        self.assertIn("PHASE", lines[0])

    def test_delete_with_finalizer_waits_for_the_finalizer(self):
        self.k("apply", "-f", testdata("gadget-finalizer.yaml"))
        # kubectl delete waits while the finalizer holds the object.
        deleter = self.cluster.popen_kubectl("delete", "gadget", "g-final", "--timeout=60s")
        obj = wait_until(lambda: (lambda o: o if "deletionTimestamp" in o["metadata"] else None)(
            self.gadget("g-final")), what="the deletionTimestamp")
        self.assertEqual(obj["metadata"]["finalizers"], ["test.parallelrun.io/cleanup"])
        self.assertIsNone(deleter.poll())
        adding = self.k("patch", "gadget", "g-final", "--type=merge", "-p",
                        '{"metadata":{"finalizers":["a/b","test.parallelrun.io/cleanup"]}}',
                        check=False)
        self.assertIn("no new finalizers can be added", adding.stderr)
        self.k("patch", "gadget", "g-final", "--type=merge", "-p",
               '{"metadata":{"finalizers":null}}')
        out, err = deleter.communicate(timeout=90)
        self.assertEqual(deleter.returncode, 0, err)
        self.assertIn('gadget.test.parallelrun.io "g-final" deleted', out)
        self.assertNotEqual(self.k("get", "gadget", "g-final", check=False).returncode, 0)

    def test_describe_shows_events_of_the_object(self):
        self.k("apply", "-f", "-", input=json.dumps({
            "apiVersion": "test.parallelrun.io/v1", "kind": "Gadget",
            "metadata": {"name": "g-desc"}, "spec": {"size": 1}}))
        obj = self.gadget("g-desc")
        self.k("create", "-f", "-", input=json.dumps({
            "apiVersion": "v1", "kind": "Event",
            "metadata": {"name": "g-desc.1", "namespace": "default"},
            "involvedObject": {"apiVersion": "test.parallelrun.io/v1", "kind": "Gadget",
                               "name": "g-desc", "namespace": "default",
                               "uid": obj["metadata"]["uid"]},
            "reason": "Polished", "message": "the gadget shines", "type": "Normal",
            "source": {"component": "e2e"}}))
        out = self.k("describe", "gadget", "g-desc").stdout
        self.assertIn("Polished", out)
        self.assertIn("the gadget shines", out)
        events = self.k("get", "events").stdout
        self.assertIn("gadget/g-desc", events)

    def test_api_resources_and_explain(self):
        out = self.k("api-resources").stdout
        self.assertRegex(out, r"gadgets\s+gd\s+test.parallelrun.io/v1\s+true\s+Gadget")
        self.assertRegex(out, r"pods\s+po\s+v1\s+true\s+Pod")
        explain = self.k("explain", "gadget.spec.size").stdout
        self.assertIn("How many parts.", explain)
        self.assertIn("<integer>", explain)

    def test_auth_can_i_and_rbac_for_a_service_account(self):
        self.k("apply", "-f", testdata("rbac-reader.yaml"))
        sa = "--as=system:serviceaccount:default:reader"
        self.assertEqual(self.k("auth", "can-i", "list", "gadgets", sa).stdout.strip(), "yes")
        no = self.k("auth", "can-i", "delete", "gadgets", sa, check=False)
        self.assertEqual(no.stdout.strip(), "no")
        token_file = os.path.join(self.cluster.dir, "tokens", "default", "reader")
        def read_token():
            if not os.path.exists(token_file):
                return None
            with open(token_file) as f:
                return f.read().strip()
        token = wait_until(read_token, what="the service-account token")
        self.k("get", "gadgets", "--token=" + token)
        denied = self.k("get", "secrets", "--token=" + token, check=False)
        self.assertIn('Error from server (Forbidden): secrets is forbidden: User '
                      '"system:serviceaccount:default:reader" cannot list resource "secrets" in '
                      'API group "" in the namespace "default"', denied.stderr)

    def test_dry_run_stores_nothing(self):
        out = self.k("apply", "--dry-run=server", "-f", "-", input=json.dumps({
            "apiVersion": "test.parallelrun.io/v1", "kind": "Gadget",
            "metadata": {"name": "g-dry"}, "spec": {"size": 1}})).stdout
        self.assertIn("created (server dry run)", out)
        self.assertNotEqual(self.k("get", "gadget", "g-dry", check=False).returncode, 0)

    def test_owner_references_are_garbage_collected(self):
        self.k("apply", "-f", "-", input=json.dumps({
            "apiVersion": "test.parallelrun.io/v1", "kind": "Gadget",
            "metadata": {"name": "g-owner"}, "spec": {"size": 1}}))
        uid = self.gadget("g-owner")["metadata"]["uid"]
        self.k("create", "-f", "-", input=json.dumps({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "owned", "ownerReferences": [
                {"apiVersion": "test.parallelrun.io/v1", "kind": "Gadget", "name": "g-owner",
                 "uid": uid, "controller": True, "blockOwnerDeletion": True}]},
            "data": {"a": "b"}}))
        self.k("delete", "gadget", "g-owner")
        wait_until(lambda: self.k("get", "configmap", "owned", check=False).returncode != 0,
                   what="the dependent ConfigMap to be collected")

    def test_builtin_kinds_create_and_reapply(self):
        self.k("create", "namespace", "e2e-ns")
        self.k("create", "configmap", "cm1", "-n", "e2e-ns", "--from-literal=k=v")
        self.k("create", "secret", "generic", "s1", "-n", "e2e-ns", "--from-literal=k=v")
        secrets = self.k("get", "secrets", "-n", "e2e-ns").stdout
        self.assertRegex(secrets, r"s1\s+Opaque\s+1")
        pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p1", "namespace": "e2e-ns"},
               "spec": {"containers": [{"name": "main", "image": "busybox:1",
                                         "command": ["sleep", "1"]}]}}
        self.k("apply", "-f", "-", input=json.dumps(pod))
        pod["metadata"]["labels"] = {"changed": "yes"}
        self.k("apply", "-f", "-", input=json.dumps(pod))
        got = json.loads(self.k("get", "pod", "p1", "-n", "e2e-ns", "-o", "json").stdout)
        self.assertEqual(got["metadata"]["labels"], {"changed": "yes"})
        self.assertEqual(len(got["spec"]["containers"]), 1)
        self.assertNotIn("$setElementOrder/containers", json.dumps(got))
        self.k("delete", "namespace", "e2e-ns", "--timeout=60s")

    def test_pod_runs_a_shell_command_with_logs_exit_code_and_termination_message(self):
        self.k("run", "shell", "--image=busybox:1", "--restart=Never", "--command", "--", "sh",
               "-c", "echo hello; echo line2; echo done > /dev/termination-log; exit 3")
        self.k("wait", "--for=jsonpath={.status.phase}=Failed", "pod/shell", "--timeout=60s")
        self.assertEqual(self.k("logs", "shell").stdout, "hello\nline2\n")
        self.assertEqual(self.k("logs", "shell", "--tail=1").stdout, "line2\n")
        pod = json.loads(self.k("get", "pod", "shell", "-o", "json").stdout)
        term = pod["status"]["containerStatuses"][0]["state"]["terminated"]
        self.assertEqual((term["exitCode"], term["message"]), (3, "done\n"))
        self.assertRegex(self.k("get", "pod", "shell").stdout, r"shell\s+0/1\s+Error\s+0")

    def test_deployment_pod_comes_up_and_is_replaced_when_deleted(self):
        manifest = self.k("create", "deployment", "web", "--image=busybox:1", "--dry-run=client",
                          "-o", "json", "--", "sleep", "1000").stdout
        self.k("apply", "-f", "-", input=manifest)
        self.k("rollout", "status", "deployment/web", "--timeout=60s")
        first = self.k("get", "pods", "-l", "app=web", "-o", "name").stdout.split()
        self.assertEqual(len(first), 1)
        self.k("delete", first[0], "--timeout=60s")
        def replaced():
            names = self.k("get", "pods", "-l", "app=web", "-o", "name").stdout.split()
            return names if names and names != first else None
        wait_until(replaced, timeout=60, what="a replacement pod")
        self.k("rollout", "status", "deployment/web", "--timeout=60s")
        self.k("delete", "deployment", "web", "--timeout=60s")
        wait_until(lambda: not self.k("get", "pods", "-l", "app=web", "-o", "name").stdout.split(),
                   timeout=60, what="the deployment's pods to be collected")


class PythonClientTest(ClusterTestCase):
    def api(self):
        from kubernetes import client, config
        return client.ApiClient(config.new_client_from_config(self.cluster.kubeconfig)
                                .configuration)

    def test_list_watch_from_resource_version_and_status_updates(self):
        from kubernetes import client, watch
        api_client = self.api()
        crs = client.CustomObjectsApi(api_client)
        group, version, plural = "test.parallelrun.io", "v1", "gadgets"
        crs.create_namespaced_custom_object(group, version, "default", plural, {
            "apiVersion": "test.parallelrun.io/v1", "kind": "Gadget",
            "metadata": {"name": "py1"}, "spec": {"size": 2}})
        listed = crs.list_namespaced_custom_object(group, version, "default", plural)
        self.assertIn("py1", [i["metadata"]["name"] for i in listed["items"]])
        rv = listed["metadata"]["resourceVersion"]
        # Status update through the status subresource; spec changes there are ignored.
        obj = crs.get_namespaced_custom_object(group, version, "default", plural, "py1")
        obj["status"] = {"phase": "Running", "observedGeneration": 1}
        obj["spec"]["size"] = 9
        updated = crs.replace_namespaced_custom_object_status(group, version, "default", plural,
                                                              "py1", obj)
        self.assertEqual(updated["status"]["phase"], "Running")
        self.assertEqual(updated["spec"]["size"], 2)
        # A stale resourceVersion conflicts.
        stale = dict(obj)
        stale["metadata"] = dict(obj["metadata"])
        with self.assertRaises(client.exceptions.ApiException) as ctx:
            crs.replace_namespaced_custom_object(group, version, "default", plural, "py1", stale)
        self.assertEqual(ctx.exception.status, 409)
        # Watching from the list's resourceVersion sees the later change only.
        events = []
        w = watch.Watch()
        for ev in w.stream(crs.list_namespaced_custom_object, group, version, "default", plural,
                           resource_version=rv, timeout_seconds=20):
            events.append((ev["type"], ev["object"]["metadata"]["name"],
                           ev["object"].get("status", {}).get("phase")))
            if ev["type"] == "MODIFIED":
                w.stop()
        self.assertEqual(events[0], ("MODIFIED", "py1", "Running"))
        core = client.CoreV1Api(api_client)
        self.assertIn("default", [n.metadata.name for n in core.list_namespace().items])
        api_client.close()


if __name__ == "__main__":
    unittest.main()
