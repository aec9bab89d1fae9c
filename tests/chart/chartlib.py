"""Render the parallelrun Helm chart and install it into a test cluster, without helm.

For tests (tests/chart and the end-to-end suites):

    import chartlib
    docs = chartlib.render_docs(values={"watchNamespace": "team-a"})
    chartlib.install_chart(kubeconfig, values={"metrics.port": 18080, "health.port": 18081})
    chartlib.wait_for_operator(kubeconfig)

Rendering runs chart-render (tests/chart/render, built into <build>/bin; CHART_RENDER overrides
the path), which follows `helm template`. install_chart does what `helm install
--create-namespace` does to the cluster: the namespace, the CRDs (waiting until they are
Established), then every rendered object, with kubectl apply. The operator pod runs
`parallelrun-operator` from the PATH that `testcluster up` was started with (the test cluster
ignores images), so put the build's bin/ on PATH before `up`.

OPERATOR_RBAC is the list of rights the operator may use (the common operator brief); the chart
must grant exactly these, and the operator must need no others.
"""

import glob
import os
import re
import subprocess
import tempfile

import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
CHART = os.path.join(REPO, "charts", "parallelrun")
RENDER = os.environ.get("CHART_RENDER", os.path.join(REPO, "build", "bin", "chart-render"))
KUBECTL = os.environ.get("KUBECTL", "/usr/bin/kubectl")

DEFAULT_RELEASE = "parallelrun"
DEFAULT_NAMESPACE = "parallelrun-system"

# (apiGroup, resource) -> verbs. Leases are granted in the release namespace only (a Role), the
# rest cluster-wide (ClusterRole) or in watchNamespace (Role).
OPERATOR_RBAC = {
    ("parallelrun.io", "parallelrunjobs"): {"list", "watch", "patch", "delete"},
    ("parallelrun.io", "parallelrunjobs/status"): {"update"},
    ("parallelrun.io", "parallelrunjobs/finalizers"): {"update"},
    ("", "pods"): {"list", "watch", "create", "delete"},
    ("", "secrets"): {"get", "create", "patch"},
    ("", "configmaps"): {"list", "watch", "create"},
    ("", "services"): {"list", "watch", "create"},
    ("", "events"): {"create"},
    ("networking.k8s.io", "networkpolicies"): {"create"},
    ("authorization.k8s.io", "localsubjectaccessreviews"): {"create"},
    ("coordination.k8s.io", "leases"): {"get", "create", "update"},
}
LEASE_RESOURCES = {("coordination.k8s.io", "leases")}


class RenderError(Exception):
    """chart-render failed; the message is its stderr."""


def fullname(release=DEFAULT_RELEASE):
    """The chart's object name prefix for a release (parallelrun.fullname in _helpers.tpl)."""
    return release if "parallelrun" in release else release + "-parallelrun"


def render(values=None, value_files=(), release=DEFAULT_RELEASE, namespace=DEFAULT_NAMESPACE,
           include_crds=False, notes=False, string_values=None):
    """Runs chart-render; values and string_values map --set paths to values. Returns stdout."""
    cmd = [RENDER, release, CHART, "--namespace", namespace]
    for key, value in (values or {}).items():
        cmd += ["--set", "%s=%s" % (key, set_literal(value))]
    for key, value in (string_values or {}).items():
        cmd += ["--set-string", "%s=%s" % (key, value)]
    for path in value_files:
        cmd += ["-f", path]
    if include_crds:
        cmd.append("--include-crds")
    if notes:
        cmd.append("--notes")
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    if out.returncode != 0:
        raise RenderError(out.stderr.strip())
    return out.stdout


def set_literal(value):
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def split_documents(text):
    """[(source, object)] from helm-template output; source is the '# Source:' path."""
    parts = re.split(r"^---\n# Source: ([^\n]*)\n", text, flags=re.M)
    if parts[0].strip():
        raise ValueError("output does not start with a '# Source:' document: %r" % parts[0][:80])
    docs = []
    for source, body in zip(parts[1::2], parts[2::2]):
        docs += [(source, obj) for obj in yaml.safe_load_all(body) if obj is not None]
    return docs


def render_docs(**kwargs):
    """render() parsed: the list of objects, in output order."""
    return [obj for _, obj in split_documents(render(**kwargs))]


def grants(rules):
    """Flattens RBAC rules to {(apiGroup, resource): verbs}."""
    out = {}
    for rule in rules:
        for group in rule.get("apiGroups", []):
            for resource in rule.get("resources", []):
                out.setdefault((group, resource), set()).update(rule.get("verbs", []))
    return out


def chart_grants(docs):
    """{(kind, namespace or None): grants} for every ClusterRole and Role in docs."""
    out = {}
    for d in docs:
        if d["kind"] in ("ClusterRole", "Role"):
            out[(d["kind"], d["metadata"].get("namespace"))] = grants(d["rules"])
    return out


class Kubectl:
    """kubectl against one kubeconfig, with a fresh discovery cache per call."""

    def __init__(self, kubeconfig):
        self.kubeconfig = kubeconfig
        self.cache_root = tempfile.mkdtemp(prefix="chart-kubectl-")

    def __call__(self, *args, check=True, timeout=120, input=None):
        cache = tempfile.mkdtemp(dir=self.cache_root)
        cmd = [KUBECTL, "--kubeconfig", self.kubeconfig, "--cache-dir", cache] + list(args)
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, input=input)
        if check and out.returncode != 0:
            raise AssertionError("kubectl %s failed (%d): %s %s" % (
                " ".join(args), out.returncode, out.stdout, out.stderr))
        return out


def ensure_namespace(kubectl, name):
    if kubectl("get", "namespace", name, check=False).returncode != 0:
        kubectl("create", "namespace", name)


def install_chart(kubeconfig, values=None, value_files=(), release=DEFAULT_RELEASE,
                  namespace=DEFAULT_NAMESPACE, timeout=120):
    """Installs the chart as `helm install --create-namespace` would; returns the objects applied.

    values: {--set path: value}, e.g. {"metrics.port": 18080}. The namespace (and watchNamespace,
    when set) is created if missing; the CRDs are applied first and waited for (Established).
    Returns when everything is applied; wait_for_operator waits for the operator pod.
    """
    kubectl = Kubectl(kubeconfig)
    ensure_namespace(kubectl, namespace)
    watch = (values or {}).get("watchNamespace")
    if watch:
        ensure_namespace(kubectl, watch)
    crds = []
    for path in sorted(glob.glob(os.path.join(CHART, "crds", "*.yaml"))):
        # As helm install: create the CRDs that are missing, leave existing ones alone.
        with open(path) as f:
            objs = [o for o in yaml.safe_load_all(f) if o is not None]
        crds += objs
        names = ["crd/" + o["metadata"]["name"] for o in objs]
        if any(kubectl("get", n, check=False).returncode != 0 for n in names):
            kubectl("create", "-f", path)
        for n in names:
            kubectl("wait", "--for=condition=Established", n, "--timeout=%ds" % timeout,
                    timeout=timeout + 30)
    text = render(values=values, value_files=value_files, release=release, namespace=namespace)
    kubectl("apply", "-f", "-", input=text, timeout=timeout)
    return crds + [obj for _, obj in split_documents(text)]


def wait_for_operator(kubeconfig, release=DEFAULT_RELEASE, namespace=DEFAULT_NAMESPACE,
                      timeout=120):
    """Waits until the operator Deployment's replicas are ready (kubectl rollout status)."""
    Kubectl(kubeconfig)("-n", namespace, "rollout", "status", "deployment/" + fullname(release),
                        "--timeout=%ds" % timeout, timeout=timeout + 30)
    wait_for_webhook(kubeconfig, timeout=timeout)


# Valid for the CRD's schema, invalid for the operator (an unknown input in the arguments): the
# admission webhook refuses it, which proves the webhook answers.
_WEBHOOK_PROBE = {
    "apiVersion": "parallelrun.io/v1alpha1", "kind": "ParallelRunJob",
    "metadata": {"name": "webhook-probe", "namespace": "default"},
    "spec": {"entryScript": "s.py", "sourceDirectory": {"path": "code"},
             "arguments": ["$(inputs.none)"],
             "inputs": [{"name": "i", "type": "file", "source": {"path": "in"}}],
             "output": {"path": "out"}}}


def wait_for_webhook(kubeconfig, timeout=120):
    """Waits until the admission webhook answers (a Deployment is rolled out before its process
    listens, and the webhook's failurePolicy is Fail): a server-side dry run of an invalid job
    must be refused by the webhook itself."""
    import json
    import time
    kubectl = Kubectl(kubeconfig)
    deadline = time.monotonic() + timeout
    while True:
        out = kubectl("create", "--dry-run=server", "-f", "-", check=False,
                      input=json.dumps(_WEBHOOK_PROBE))
        if "denied the request" in out.stderr:
            return
        if time.monotonic() > deadline:
            raise AssertionError("the admission webhook did not answer: " + out.stderr)
        time.sleep(0.5)


def uninstall_chart(kubeconfig, values=None, value_files=(), release=DEFAULT_RELEASE,
                    namespace=DEFAULT_NAMESPACE, timeout=120):
    """Deletes what install_chart applied, except the CRDs (helm uninstall keeps them too)."""
    text = render(values=values, value_files=value_files, release=release, namespace=namespace)
    Kubectl(kubeconfig)("delete", "--ignore-not-found", "--wait=false", "-f", "-", input=text,
                        timeout=timeout)
