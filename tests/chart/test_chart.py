"""Tests of the Helm chart charts/parallelrun with the real helm (helm lint, helm template).

RenderTest needs only helm; ClusterTest also starts a test cluster (tests/cluster): `helm
template --validate` and `kubectl apply --dry-run=server` of every variant, `helm install
--dry-run=server`, and real `helm install`s whose RBAC is then checked with `kubectl auth can-i`
as the operator's ServiceAccount. Run by CTest (chart.chart) with TESTCLUSTER_BIN set; helm comes
from PATH (a missing helm fails the tests). test_helm_lifecycle.py runs the README's install.
"""

import json
import os
import re
import shutil
import subprocess
import tempfile
import unittest

import yaml

import chartlib
from chartlib import CHART, OPERATOR_RBAC, REPO, RenderError, render, render_docs

WRAPPER = os.path.join(REPO, "tests", "cluster", "testcluster")
NAMESPACE = chartlib.DEFAULT_NAMESPACE
FULLNAME = chartlib.fullname()
JOB_RBAC = {k: v for k, v in OPERATOR_RBAC.items() if k not in chartlib.LEASE_RESOURCES}
LEASE_RBAC = {k: v for k, v in OPERATOR_RBAC.items() if k in chartlib.LEASE_RESOURCES}

# The renderings every structural test runs over: --set values of each variant.
VARIANTS = {
    "defaults": {},
    "watch-namespace": {"watchNamespace": "team-a"},
    "no-leader-election": {"leaderElection.enabled": False},
    "service-monitor": {"serviceMonitor.enabled": True},
    "everything-set": {
        "replicaCount": 3, "watchNamespace": "team-b", "defaultJobImage": "example.com/job:1",
        "metrics.port": 19090, "health.port": 19091, "image.tag": "dev",
        "nodeSelector.disk": "ssd", "tolerations[0].key": "dedicated",
        "tolerations[0].operator": "Exists", "podAnnotations.team": "data",
        "serviceAccount.annotations.owner": "me", "imagePullSecrets[0].name": "regcred",
        "priorityClassName": "high", "logFormat": "text", "logLevel": "debug",
        "maxConcurrentReconciles": 8,
    },
}


def by_kind(docs, kind):
    return [d for d in docs if d["kind"] == kind]


def metrics_service(docs):
    return [s for s in by_kind(docs, "Service") if s["metadata"]["name"].endswith("-metrics")][0]


def one(docs, kind):
    found = by_kind(docs, kind)
    if len(found) != 1:
        raise AssertionError("expected one %s, found %d" % (kind, len(found)))
    return found[0]


def container(docs):
    return one(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]


def flag_values(args):
    """{--flag: value or True} of a container's args."""
    out = {}
    for a in args:
        name, eq, value = a.partition("=")
        out[name] = value if eq else True
    return out


def project_version():
    with open(os.path.join(REPO, "CMakeLists.txt")) as f:
        return re.search(r"project\(parallelrun VERSION ([0-9.]+)", f.read()).group(1)


class RenderTest(unittest.TestCase):
    def test_every_variant_renders_documents_that_parse(self):
        for name, values in VARIANTS.items():
            with self.subTest(variant=name):
                text = render(values=values, include_crds=True)
                self.assertTrue(text.startswith("---\n# Source: parallelrun/crds/"))
                docs = chartlib.split_documents(text)
                self.assertGreater(len(docs), 5)
                for source, obj in docs:
                    self.assertRegex(source, r"^parallelrun/(templates|crds)/[-.\w]+\.yaml$")
                    for key in ("apiVersion", "kind", "metadata"):
                        self.assertIn(key, obj, source)
                    self.assertTrue(obj["metadata"].get("name"), source)

    def test_defaults_render_the_operator_and_its_rbac(self):
        docs = render_docs()
        kinds = sorted(d["kind"] for d in docs)
        self.assertEqual(kinds, ["ClusterRole", "ClusterRoleBinding", "Deployment", "Role",
                                 "RoleBinding", "Secret", "Service", "Service", "ServiceAccount",
                                 "ValidatingWebhookConfiguration"])
        # Helm's install order: the ServiceAccount and RBAC before the Deployment, the webhook's
        # registration after it.
        self.assertEqual(docs[0]["kind"], "ServiceAccount")
        self.assertEqual(docs[-2]["kind"], "Deployment")
        self.assertEqual(docs[-1]["kind"], "ValidatingWebhookConfiguration")
        for d in docs:
            if d["kind"] not in ("ClusterRole", "ClusterRoleBinding",
                                 "ValidatingWebhookConfiguration"):
                self.assertEqual(d["metadata"]["namespace"], NAMESPACE, d["kind"])
            self.assertEqual(d["metadata"]["labels"]["app.kubernetes.io/managed-by"], "Helm")

    def test_deployment_runs_the_operator_with_probes_and_the_documented_flags(self):
        docs = render_docs(values={"metrics.port": 18080, "health.port": 18081})
        deployment = one(docs, "Deployment")
        self.assertEqual(deployment["spec"]["replicas"], 1)
        pod = deployment["spec"]["template"]["spec"]
        self.assertEqual(pod["serviceAccountName"], FULLNAME)
        c = container(docs)
        self.assertEqual(c["command"], ["parallelrun-operator"])
        self.assertEqual(c["image"], "parallelrun:" + project_version())
        self.assertEqual(flag_values(c["args"]), {
            "--metrics-bind-address": "$(POD_IP):18080",
            "--health-probe-bind-address": "$(POD_IP):18081",
            "--default-image": "parallelrun:" + project_version(),
            "--leader-elect": True,
            "--leader-election-namespace": "$(POD_NAMESPACE)",
            "--leader-election-id": "parallelrun-operator",
            "--max-concurrent-reconciles": "4",
            "--webhook-bind-address": "$(POD_IP):9443",
            "--webhook-cert-dir": "/etc/parallelrun/webhook",
            "--operator-pod-labels": "app.kubernetes.io/name=parallelrun,"
                                     "app.kubernetes.io/instance=parallelrun,"
                                     "app.kubernetes.io/component=operator",
            "--log-format": "json",
            "--log-level": "info",
        })
        self.assertEqual(c["env"], [
            {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
            {"name": "POD_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
        ])
        ports = {p["name"]: p["containerPort"] for p in c["ports"]}
        self.assertEqual(ports, {"metrics": 18080, "health": 18081, "webhook": 9443})
        self.assertEqual(c["livenessProbe"]["httpGet"], {"path": "/healthz", "port": "health"})
        self.assertEqual(c["readinessProbe"]["httpGet"], {"path": "/readyz", "port": "health"})
        self.assertIn("memory", c["resources"]["limits"])
        service = metrics_service(docs)
        self.assertEqual(service["spec"]["ports"][0]["targetPort"], "metrics")
        self.assertEqual(service["spec"]["selector"], deployment["spec"]["selector"]["matchLabels"])
        self.assertLessEqual(service["spec"]["selector"].items(),
                             deployment["spec"]["template"]["metadata"]["labels"].items())

    def test_webhook_is_registered_with_the_ca_of_its_serving_certificate(self):
        import base64
        import ssl
        import tempfile
        docs = render_docs(values={"webhook.port": 19443, "webhook.timeoutSeconds": 5})
        config = one(docs, "ValidatingWebhookConfiguration")
        [hook] = config["webhooks"]
        self.assertEqual(hook["name"], "validate.parallelrunjobs.parallelrun.io")
        self.assertEqual(hook["failurePolicy"], "Fail")
        self.assertEqual(hook["sideEffects"], "None")
        self.assertEqual(hook["admissionReviewVersions"], ["v1"])
        self.assertEqual(hook["timeoutSeconds"], 5)
        self.assertEqual(hook["rules"], [{
            "apiGroups": ["parallelrun.io"], "apiVersions": ["*"],
            "operations": ["CREATE", "UPDATE"], "resources": ["parallelrunjobs"],
            "scope": "Namespaced"}])
        self.assertNotIn("namespaceSelector", hook)
        service = [s for s in by_kind(docs, "Service")
                   if s["metadata"]["name"] == hook["clientConfig"]["service"]["name"]][0]
        self.assertEqual(service["spec"]["ports"][0]["port"],
                         hook["clientConfig"]["service"]["port"])
        self.assertEqual(service["spec"]["ports"][0]["targetPort"], "webhook")
        deployment = one(docs, "Deployment")
        c = container(docs)
        self.assertIn({"name": "webhook", "containerPort": 19443, "protocol": "TCP"}, c["ports"])
        self.assertEqual(flag_values(c["args"])["--webhook-bind-address"], "$(POD_IP):19443")
        # The pods mount the Secret whose certificate the caBundle verifies, for the Service's
        # DNS name.
        secret = one(docs, "Secret")
        volumes = deployment["spec"]["template"]["spec"]["volumes"]
        self.assertEqual(volumes, [{"name": "webhook-tls",
                                    "secret": {"secretName": secret["metadata"]["name"]}}])
        ca = base64.b64decode(hook["clientConfig"]["caBundle"]).decode()
        self.assertEqual(ca, base64.b64decode(secret["data"]["ca.crt"]).decode())
        with tempfile.TemporaryDirectory() as d:
            for key in ("ca.crt", "tls.crt", "tls.key"):
                with open(os.path.join(d, key), "wb") as f:
                    f.write(base64.b64decode(secret["data"][key]))
            server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            server.load_cert_chain(os.path.join(d, "tls.crt"), os.path.join(d, "tls.key"))
            out = subprocess.run(["openssl", "verify", "-CAfile", os.path.join(d, "ca.crt"),
                                  "-verify_hostname", "%s.%s.svc" % (
                                      service["metadata"]["name"], NAMESPACE),
                                  os.path.join(d, "tls.crt")], capture_output=True, text=True)
            self.assertEqual(out.returncode, 0, out.stdout + out.stderr)
        # Watching one namespace: the webhook only sees that one.
        hook = one(render_docs(values={"watchNamespace": "team-b"}),
                   "ValidatingWebhookConfiguration")["webhooks"][0]
        self.assertEqual(hook["namespaceSelector"],
                         {"matchLabels": {"kubernetes.io/metadata.name": "team-b"}})

    def test_security_context_is_restricted_and_non_root(self):
        docs = render_docs()
        pod = one(docs, "Deployment")["spec"]["template"]["spec"]
        self.assertEqual(pod["securityContext"]["runAsNonRoot"], True)
        self.assertEqual(pod["securityContext"]["runAsUser"], 10001)
        self.assertEqual(pod["securityContext"]["seccompProfile"], {"type": "RuntimeDefault"})
        sc = container(docs)["securityContext"]
        self.assertEqual(sc["allowPrivilegeEscalation"], False)
        self.assertEqual(sc["readOnlyRootFilesystem"], True)
        self.assertEqual(sc["runAsNonRoot"], True)
        self.assertEqual(sc["capabilities"], {"drop": ["ALL"]})
        self.assertEqual(sc["seccompProfile"], {"type": "RuntimeDefault"})

    def test_cluster_role_grants_exactly_the_operator_rights(self):
        grants = chartlib.chart_grants(render_docs())
        self.assertEqual(grants, {("ClusterRole", None): JOB_RBAC,
                                  ("Role", NAMESPACE): LEASE_RBAC})
        union = {}
        for g in grants.values():
            for k, v in g.items():
                union.setdefault(k, set()).update(v)
        self.assertEqual(union, OPERATOR_RBAC)

    def test_bindings_bind_the_service_account_to_each_role(self):
        for name, values in VARIANTS.items():
            with self.subTest(variant=name):
                docs = render_docs(values=values)
                roles = {(d["kind"], d["metadata"]["name"], d["metadata"].get("namespace"))
                         for d in docs if d["kind"] in ("ClusterRole", "Role")}
                bound = set()
                for b in docs:
                    if b["kind"] not in ("ClusterRoleBinding", "RoleBinding"):
                        continue
                    self.assertEqual(b["subjects"], [{"kind": "ServiceAccount", "name": FULLNAME,
                                                      "namespace": NAMESPACE}])
                    bound.add((b["roleRef"]["kind"], b["roleRef"]["name"],
                               b["metadata"].get("namespace")))
                self.assertEqual(bound, roles)

    def test_watch_namespace_turns_the_cluster_role_into_a_role_there(self):
        docs = render_docs(values={"watchNamespace": "team-a"})
        self.assertEqual(by_kind(docs, "ClusterRole"), [])
        self.assertEqual(by_kind(docs, "ClusterRoleBinding"), [])
        self.assertEqual(chartlib.chart_grants(docs), {("Role", "team-a"): JOB_RBAC,
                                                       ("Role", NAMESPACE): LEASE_RBAC})
        self.assertEqual(flag_values(container(docs)["args"])["--namespace"], "team-a")

    def test_leader_election_off_drops_the_lease_role_and_flags(self):
        docs = render_docs(values={"leaderElection.enabled": False})
        self.assertEqual(chartlib.chart_grants(docs), {("ClusterRole", None): JOB_RBAC})
        flags = flag_values(container(docs)["args"])
        for flag in ("--leader-elect", "--leader-election-namespace", "--leader-election-id"):
            self.assertNotIn(flag, flags)

    def test_replicas_without_leader_election_are_refused(self):
        with self.assertRaisesRegex(RenderError, "replicaCount > 1 needs leaderElection"):
            render(values={"replicaCount": 2, "leaderElection.enabled": False})
        docs = render_docs(values={"replicaCount": 2})
        self.assertEqual(one(docs, "Deployment")["spec"]["replicas"], 2)

    def test_schema_rejects_a_wrong_type_with_a_clear_message(self):
        with self.assertRaises(RenderError) as e:
            render(values={"replicaCount": "abc"})
        self.assertIn("values don't meet the specifications of the schema(s)", str(e.exception))
        self.assertIn("- replicaCount: Invalid type. Expected: integer, given: string",
                      str(e.exception))

    def test_schema_rejects_unknown_keys_bad_enums_and_ranges(self):
        cases = {
            "replicaCount": ("-1", "replicaCount: Must be greater than or equal to 0"),
            "metrics.port": ("70000", "metrics.port: Must be less than or equal to 65535"),
            "logFormat": ("xml", 'logFormat must be one of the following: "json", "text"'),
            "leaderElection.enabled": ("yes", "Expected: boolean, given: string"),
            "watchNamespace": ("Team_A", "watchNamespace: Does not match pattern"),
            "replicaCont": ("1", "(root): Additional property replicaCont is not allowed"),
            "image.pullPolicy": ("Sometimes", "image.pullPolicy: image.pullPolicy must be one of"),
        }
        for key, (value, message) in cases.items():
            with self.subTest(key=key):
                with self.assertRaises(RenderError) as e:
                    render(values={key: value})
                self.assertIn(message, str(e.exception))

    def test_every_value_in_values_yaml_is_typed_by_the_schema(self):
        with open(os.path.join(CHART, "values.yaml")) as f:
            values = yaml.safe_load(f)
        with open(os.path.join(CHART, "values.schema.json")) as f:
            schema = json.load(f)
        self.assertEqual(schema["$schema"], "http://json-schema.org/draft-07/schema#")

        def walk(value, node, path):
            self.assertIn("type", node, "no type for " + path)
            if isinstance(value, dict) and "properties" in node:
                self.assertEqual(node.get("additionalProperties"), False, path)
                for key, sub in value.items():
                    self.assertIn(key, node["properties"], "%s.%s not in the schema" % (path, key))
                    walk(sub, node["properties"][key], path + "." + key)

        walk(values, schema, "(root)")
        self.assertEqual(set(schema["properties"]), set(values))

    def test_every_top_level_value_is_commented(self):
        # A comment right above each key; one-line keys in a row may share one comment.
        with open(os.path.join(CHART, "values.yaml")) as f:
            lines = f.read().splitlines()
        for i, line in enumerate(lines):
            if re.match(r"^[A-Za-z]\w*:", line):
                j = i - 1
                while j >= 0 and re.match(r"^[A-Za-z]\w*: \S", lines[j]):
                    j -= 1
                self.assertTrue(j >= 0 and lines[j].startswith("#"), "no comment above " + line)

    def test_values_files_merge_over_defaults_and_set_wins(self):
        with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
            f.write("logLevel: debug\nresources:\n  limits:\n    memory: 1Gi\n"
                    "metrics:\n  port: 18000\n")
        try:
            docs = render_docs(value_files=[f.name], values={"metrics.port": 18001})
        finally:
            os.unlink(f.name)
        c = container(docs)
        flags = flag_values(c["args"])
        self.assertEqual(flags["--log-level"], "debug")
        self.assertEqual(flags["--metrics-bind-address"], "$(POD_IP):18001")
        self.assertEqual(c["resources"], {"limits": {"memory": "1Gi"},
                                          "requests": {"cpu": "50m", "memory": "64Mi"}})

    def test_every_value_reaches_the_manifests(self):
        docs = render_docs(values=VARIANTS["everything-set"])
        deployment = one(docs, "Deployment")
        pod = deployment["spec"]["template"]["spec"]
        c = pod["containers"][0]
        self.assertEqual(deployment["spec"]["replicas"], 3)
        self.assertEqual(c["image"], "parallelrun:dev")
        flags = flag_values(c["args"])
        self.assertEqual(flags["--default-image"], "example.com/job:1")
        self.assertEqual(flags["--namespace"], "team-b")
        self.assertEqual(flags["--log-format"], "text")
        self.assertEqual(flags["--log-level"], "debug")
        self.assertEqual(flags["--max-concurrent-reconciles"], "8")
        self.assertEqual(pod["nodeSelector"], {"disk": "ssd"})
        self.assertEqual(pod["tolerations"], [{"key": "dedicated", "operator": "Exists"}])
        self.assertEqual(pod["imagePullSecrets"], [{"name": "regcred"}])
        self.assertEqual(pod["priorityClassName"], "high")
        self.assertEqual(deployment["spec"]["template"]["metadata"]["annotations"],
                         {"team": "data"})
        self.assertEqual(one(docs, "ServiceAccount")["metadata"]["annotations"], {"owner": "me"})

    def test_existing_service_account_needs_a_name(self):
        with self.assertRaisesRegex(RenderError, "serviceAccount.name is required"):
            render(values={"serviceAccount.create": False})
        docs = render_docs(values={"serviceAccount.create": False, "serviceAccount.name": "ops"})
        self.assertEqual(by_kind(docs, "ServiceAccount"), [])
        self.assertEqual(one(docs, "Deployment")["spec"]["template"]["spec"]["serviceAccountName"],
                         "ops")

    def test_service_monitor_only_when_enabled(self):
        self.assertEqual(by_kind(render_docs(), "ServiceMonitor"), [])
        docs = render_docs(values={"serviceMonitor.enabled": True,
                                   "serviceMonitor.labels.release": "prom"})
        monitor = one(docs, "ServiceMonitor")
        self.assertEqual(monitor["apiVersion"], "monitoring.coreos.com/v1")
        self.assertEqual(monitor["metadata"]["labels"]["release"], "prom")
        self.assertEqual(monitor["spec"]["endpoints"],
                         [{"port": "metrics", "path": "/metrics", "interval": "30s"}])
        service = metrics_service(docs)
        self.assertLessEqual(monitor["spec"]["selector"]["matchLabels"].items(),
                             service["metadata"]["labels"].items())

    def test_chart_version_is_the_project_version(self):
        with open(os.path.join(CHART, "Chart.yaml")) as f:
            chart = yaml.safe_load(f)
        self.assertEqual(chart["apiVersion"], "v2")
        self.assertEqual(chart["name"], "parallelrun")
        self.assertEqual(chart["appVersion"], project_version())
        self.assertRegex(chart["version"], r"^\d+\.\d+\.\d+$")

    def test_chart_crds_are_the_top_level_crds_byte_for_byte(self):
        top = os.path.join(REPO, "crds")
        ours = os.path.join(CHART, "crds")
        self.assertEqual(sorted(os.listdir(ours)), sorted(os.listdir(top)))
        for name in os.listdir(top):
            with open(os.path.join(top, name), "rb") as a, open(os.path.join(ours, name),
                                                                "rb") as b:
                self.assertTrue(a.read() == b.read(),
                                "charts/parallelrun/crds/%s differs from crds/%s: copy it" %
                                (name, name))

    def test_include_crds_puts_the_crd_first_unchanged(self):
        docs = chartlib.split_documents(render(include_crds=True))
        source, crd = docs[0]
        self.assertEqual(source, "parallelrun/crds/parallelrun.io_parallelrunjobs.yaml")
        self.assertEqual(crd["kind"], "CustomResourceDefinition")
        self.assertEqual(crd["metadata"]["name"], "parallelrunjobs.parallelrun.io")
        with open(os.path.join(CHART, "crds", "parallelrun.io_parallelrunjobs.yaml")) as f:
            self.assertEqual(crd, yaml.safe_load(f))
        self.assertNotIn("CustomResourceDefinition", [d["kind"] for _, d in docs[1:]])

    def test_helm_lint_passes_strict(self):
        for name, values in VARIANTS.items():
            with self.subTest(variant=name):
                out = chartlib.helm("lint", CHART, "--strict", "--namespace", NAMESPACE,
                                    *chartlib.value_args(values))
                self.assertIn("1 chart(s) linted, 0 chart(s) failed", out.stdout)

    def test_no_notes_in_helm_template_output(self):
        self.assertNotIn("NOTES", render())  # helm template does not output NOTES.txt


class Cluster:
    """A test cluster in a temporary folder (tests/cluster/README.md)."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="chart-test-")
        # PARALLELRUN_TEST_RUNTIME=container: pods are podman containers from local images.
        runtime = os.environ.get("PARALLELRUN_TEST_RUNTIME", "")
        extra = ["--runtime", runtime] if runtime else []
        out = subprocess.run([WRAPPER, "up", "--state", self.dir] + extra, capture_output=True,
                             text=True, timeout=120)
        if out.returncode != 0:
            shutil.rmtree(self.dir, ignore_errors=True)
            raise RuntimeError("testcluster up failed: %s %s" % (out.stdout, out.stderr))
        self.kubeconfig = out.stdout.strip().splitlines()[-1]
        self.kubectl = chartlib.Kubectl(self.kubeconfig)

    def down(self):
        subprocess.run([WRAPPER, "down", "--state", self.dir], capture_output=True, timeout=120)
        shutil.rmtree(self.dir, ignore_errors=True)


class ClusterTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.cluster = Cluster()
        cls.k = cls.cluster.kubectl

    @classmethod
    def tearDownClass(cls):
        cls.cluster.down()

    def can_i(self, verb, resource, namespace, service_account, subresource=None):
        args = ["auth", "can-i", verb, resource, "-n", namespace,
                "--as=system:serviceaccount:%s:%s" % service_account]
        if subresource:
            args.append("--subresource=" + subresource)
        out = self.k(*args, check=False)
        answer = out.stdout.strip()
        if answer not in ("yes", "no"):
            raise AssertionError("can-i %s: %s %s" % (args, out.stdout, out.stderr))
        return answer == "yes"

    def assert_rights(self, rights, namespace, service_account, expected):
        for (group, resource), verbs in rights.items():
            base, _, sub = resource.partition("/")
            qualified = base + ("." + group if group else "")
            for verb in verbs:
                with self.subTest(verb=verb, resource=resource, namespace=namespace):
                    self.assertEqual(self.can_i(verb, qualified, namespace, service_account,
                                                sub or None), expected)

    def notes(self, values=None):
        """NOTES.txt as `helm install` prints it (a client-side dry run against the cluster)."""
        out = chartlib.helm("install", "notes", CHART, "-n", NAMESPACE, "--dry-run=client",
                            "--kubeconfig", self.cluster.kubeconfig,
                            *chartlib.value_args(values))
        self.assertIn("\nNOTES:\n", out.stdout)
        return out.stdout.split("\nNOTES:\n", 1)[1]

    def test_notes_tell_what_to_run_next(self):
        notes = self.notes()
        fullname = chartlib.fullname("notes")
        self.assertIn("kubectl -n %s rollout status deployment/%s" % (NAMESPACE, fullname), notes)
        self.assertIn("kubectl apply -f job.yaml", notes)
        self.assertIn("kubectl get prj -w", notes)
        self.assertIn("kubectl logs JOB-coordinator", notes)
        self.assertIn("<output>/logs/", notes)
        self.assertIn("kubectl -n %s logs deployment/%s" % (NAMESPACE, fullname), notes)
        scoped = self.notes(values={"watchNamespace": "team-a"})
        self.assertIn("kubectl get prj -n team-a -w", scoped)
        self.assertNotIn("<no value>", notes + scoped)

    def test_helm_validate_and_server_dry_run_install_accept_the_chart(self):
        kubeconfig = self.cluster.kubeconfig
        chartlib.ensure_namespace(self.k, "team-a")
        for name, values in VARIANTS.items():
            if name == "service-monitor":
                continue
            with self.subTest(variant=name):
                render(values=values, validate_kubeconfig=kubeconfig)
        # No monitoring.coreos.com/v1 here (no Prometheus Operator): --validate refuses it.
        with self.assertRaises(RenderError):
            render(values={"serviceMonitor.enabled": True}, validate_kubeconfig=kubeconfig)
        out = chartlib.helm("install", "dry", CHART, "-n", "dry-system", "--create-namespace",
                            "--dry-run=server", "--kubeconfig", kubeconfig)
        self.assertIn("STATUS: pending-install", out.stdout)
        self.assertIn("kind: Deployment", out.stdout)
        # A dry run stores nothing: no release, no objects.
        self.assertNotIn("dry", chartlib.helm("list", "-A", "-q", "--kubeconfig", kubeconfig)
                         .stdout.split())
        self.assertNotIn("dry-parallelrun", self.k("get", "deployments", "-A").stdout)

    def test_server_dry_run_accepts_every_rendering(self):
        for ns in (NAMESPACE, "team-a", "team-b"):
            chartlib.ensure_namespace(self.k, ns)
        for name, values in VARIANTS.items():
            if name == "service-monitor":
                continue  # monitoring.coreos.com is not served without the Prometheus Operator
            with self.subTest(variant=name):
                text = render(values=values, include_crds=True)
                out = self.k("apply", "--dry-run=server", "-f", "-", input=text)
                for _, obj in chartlib.split_documents(text):
                    self.assertRegex(out.stdout, r"(?m)^%s\.?[\w.]*/%s (created|configured|"
                                     r"unchanged) \(server dry run\)$" % (
                                         obj["kind"].lower(), re.escape(obj["metadata"]["name"])))
        # A dry run changes nothing.
        self.assertNotIn(FULLNAME, self.k("get", "deployments", "-A").stdout)

    def test_install_grants_the_operator_exactly_its_rights(self):
        # replicaCount 0: the objects and rights only, no operator pod.
        docs = chartlib.install_chart(self.cluster.kubeconfig, values={"replicaCount": 0},
                                      release="rbac", namespace="rbac-system")
        self.assertEqual(docs[0]["kind"], "CustomResourceDefinition")
        self.k("get", "crd", "parallelrunjobs.parallelrun.io")
        self.k("-n", "rbac-system", "get", "deployment/rbac-parallelrun", "serviceaccount/"
               "rbac-parallelrun", "service/rbac-parallelrun-metrics")
        sa = ("rbac-system", "rbac-parallelrun")
        chartlib.ensure_namespace(self.k, "elsewhere")
        self.assert_rights(JOB_RBAC, "elsewhere", sa, True)
        self.assert_rights(LEASE_RBAC, "rbac-system", sa, True)
        self.assert_rights(LEASE_RBAC, "kube-system", sa, False)
        not_granted = {
            ("parallelrun.io", "parallelrunjobs"): {"create"},
            ("", "pods"): {"update", "patch"},
            # Issue 12: the restart counts live in the job's status, not on its Secret.
            ("", "secrets"): {"patch", "update", "list", "watch", "delete"},
            ("", "nodes"): {"get", "list"},
            ("apps", "deployments"): {"create"},
            ("coordination.k8s.io", "leases"): {"delete", "list"},
        }
        self.assert_rights(not_granted, "rbac-system", sa, False)
        # helm upgrade to one watched namespace: the ClusterRole goes, a Role comes.
        chartlib.helm("upgrade", "rbac", CHART, "-n", "rbac-system", "--reuse-values", "--set",
                      "watchNamespace=elsewhere", "--kubeconfig", self.cluster.kubeconfig)
        self.assertNotEqual(self.k("get", "clusterrole/rbac-parallelrun", check=False).returncode,
                            0)
        self.k("-n", "elsewhere", "get", "role/rbac-parallelrun", "rolebinding/rbac-parallelrun")
        self.assert_rights(JOB_RBAC, "elsewhere", sa, True)
        self.assert_rights(JOB_RBAC, "rbac-system", sa, False)
        chartlib.uninstall_chart(self.cluster.kubeconfig, release="rbac", namespace="rbac-system")
        self.assertNotEqual(self.k("-n", "rbac-system", "get", "deployment/rbac-parallelrun",
                                   check=False).returncode, 0)
        self.assertNotEqual(self.k("-n", "elsewhere", "get", "role/rbac-parallelrun",
                                   check=False).returncode, 0)
        self.k("get", "crd", "parallelrunjobs.parallelrun.io")  # Helm keeps crds/

    def test_install_watching_one_namespace_grants_rights_there_only(self):
        values = {"replicaCount": 0, "watchNamespace": "team-c"}
        chartlib.install_chart(self.cluster.kubeconfig, values=values, release="scoped",
                               namespace="scoped-system")
        sa = ("scoped-system", "scoped-parallelrun")
        chartlib.ensure_namespace(self.k, "other")
        self.assert_rights(JOB_RBAC, "team-c", sa, True)
        self.assert_rights(JOB_RBAC, "other", sa, False)
        self.assert_rights(LEASE_RBAC, "scoped-system", sa, True)
        chartlib.uninstall_chart(self.cluster.kubeconfig, release="scoped",
                                 namespace="scoped-system")
        self.assertNotEqual(self.k("-n", "team-c", "get", "role/scoped-parallelrun",
                                   check=False).returncode, 0)


if __name__ == "__main__":
    unittest.main()
