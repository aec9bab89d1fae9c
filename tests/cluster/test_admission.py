"""Validating admission webhooks of the test cluster (admission.h) with the real kubectl: a
webhook served by this test over HTTPS (clientConfig.url) sees AdmissionReview v1 with the user,
dryRun and the object; its denial is kube-apiserver's error; failurePolicy decides when it cannot
be called; a caBundle that does not match the server fails the call.

Environment (set by CTest): TESTCLUSTER_BIN.
"""

import base64
import http.server
import json
import os
import ssl
import subprocess
import tempfile
import threading
import unittest

from test_e2e_kubectl import Cluster


def make_certs(folder):
    """A CA and a certificate for 127.0.0.1 signed by it; returns (ca.crt, tls.crt, tls.key)."""
    ca_key, ca_crt = os.path.join(folder, "ca.key"), os.path.join(folder, "ca.crt")
    key, csr, crt = (os.path.join(folder, n) for n in ("tls.key", "tls.csr", "tls.crt"))
    ext = os.path.join(folder, "ext.cnf")
    with open(ext, "w") as f:
        f.write("subjectAltName=IP:127.0.0.1\n")
    run = lambda *a: subprocess.run(a, check=True, capture_output=True)  # noqa: E731
    run("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", ca_key, "-out",
        ca_crt, "-days", "1", "-subj", "/CN=test-ca")
    run("openssl", "req", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", csr,
        "-subj", "/CN=127.0.0.1")
    run("openssl", "x509", "-req", "-in", csr, "-CA", ca_crt, "-CAkey", ca_key,
        "-CAcreateserial", "-out", crt, "-days", "1", "-extfile", ext)
    return ca_crt, crt, key


class Webhook:
    """Denies ConfigMaps labelled deny=yes; records every review."""

    def __init__(self, crt, key):
        self.reviews = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                review = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                outer.reviews.append((self.path, review))
                req = review["request"]
                labels = req["object"]["metadata"].get("labels", {})
                response = {"uid": req["uid"], "allowed": labels.get("deny") != "yes"}
                if not response["allowed"]:
                    response["status"] = {"code": 403, "reason": "Forbidden",
                                          "message": "data.k: no, %s" % req["userInfo"]["username"]}
                body = json.dumps({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
                                   "response": response}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(crt, key)
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self):
        self.server.shutdown()


def configuration(name, url, ca_pem, policy="Fail"):
    return {"apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "ValidatingWebhookConfiguration", "metadata": {"name": name},
            "webhooks": [{"name": name + ".example.com", "admissionReviewVersions": ["v1"],
                          "sideEffects": "None", "failurePolicy": policy, "timeoutSeconds": 3,
                          "clientConfig": {"url": url, "caBundle": base64.b64encode(
                              ca_pem.encode()).decode()},
                          "objectSelector": {"matchLabels": {"checked": "yes"}},
                          "rules": [{"apiGroups": [""], "apiVersions": ["v1"],
                                     "operations": ["CREATE", "UPDATE"],
                                     "resources": ["configmaps"]}]}]}


def config_map(name, **labels):
    return json.dumps({"apiVersion": "v1", "kind": "ConfigMap",
                       "metadata": {"name": name, "labels": dict(checked="yes", **labels)},
                       "data": {"k": "v"}})


class AdmissionWebhookTest(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        cls.cluster = Cluster()
        cls.certs = tempfile.mkdtemp(dir=cls.cluster.dir)
        cls.ca, crt, key = make_certs(cls.certs)
        with open(cls.ca) as f:
            cls.ca_pem = f.read()
        cls.webhook = Webhook(crt, key)

    @classmethod
    def tearDownClass(cls):
        cls.webhook.stop()
        cls.cluster.down()

    def k(self, *args, **kwargs):
        return self.cluster.kubectl(*args, **kwargs)

    def register(self, name, url, ca_pem, policy="Fail"):
        self.k("apply", "-f", "-", input=json.dumps(configuration(name, url, ca_pem, policy)))
        self.addCleanup(self.k, "delete", "validatingwebhookconfiguration", name)

    def test_denial_is_the_api_error_and_the_review_has_the_request(self):
        url = "https://127.0.0.1:%d/validate" % self.webhook.port
        self.register("deny", url, self.ca_pem)
        out = self.k("create", "-f", "-", input=config_map("denied", deny="yes"), check=False)
        self.assertNotEqual(out.returncode, 0)
        self.assertIn('Error from server (Forbidden): error when creating "STDIN": admission '
                      'webhook "deny.example.com" denied the request: data.k: no, admin',
                      out.stderr)
        self.assertNotEqual(self.k("get", "configmap", "denied", check=False).returncode, 0)
        # Allowed: created; the review was a CREATE by admin, not a dry run.
        self.k("create", "-f", "-", input=config_map("allowed"))
        path, review = self.webhook.reviews[-1]
        self.assertTrue(path.startswith("/validate?timeout=3s"), path)
        req = review["request"]
        self.assertEqual((req["operation"], req["namespace"], req["name"], req["dryRun"]),
                         ("CREATE", "default", "allowed", False))
        self.assertEqual(req["userInfo"]["username"], "admin")
        self.assertEqual(req["resource"], {"group": "", "version": "v1", "resource": "configmaps"})
        # An update (kubectl apply = PATCH) carries the old object; dryRun is passed through.
        self.k("label", "configmap", "allowed", "more=yes", "--dry-run=server")
        req = self.webhook.reviews[-1][1]["request"]
        self.assertEqual((req["operation"], req["dryRun"]), ("UPDATE", True))
        self.assertNotIn("more", req["oldObject"]["metadata"]["labels"])
        self.assertEqual(req["object"]["metadata"]["labels"]["more"], "yes")
        # The objectSelector leaves unlabelled objects alone.
        count = len(self.webhook.reviews)
        self.k("create", "-f", "-", input=json.dumps({
            "apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "unchecked"}}))
        self.assertEqual(len(self.webhook.reviews), count)

    def test_namespace_selector_uses_the_automatic_name_label(self):
        config = configuration("team-only", "https://127.0.0.1:%d/validate" % self.webhook.port,
                               self.ca_pem)
        config["webhooks"][0]["namespaceSelector"] = {
            "matchLabels": {"kubernetes.io/metadata.name": "team-x"}}
        self.k("apply", "-f", "-", input=json.dumps(config))
        self.addCleanup(self.k, "delete", "validatingwebhookconfiguration", "team-only")
        self.k("create", "namespace", "team-x")
        # Not called in default; called (and denying) in team-x.
        self.k("create", "-f", "-", input=config_map("elsewhere", deny="yes"))
        out = self.k("create", "-n", "team-x", "-f", "-", input=config_map("here", deny="yes"),
                     check=False)
        self.assertIn('admission webhook "team-only.example.com" denied the request', out.stderr)

    def test_failure_policy_decides_when_the_webhook_cannot_be_called(self):
        closed = "https://127.0.0.1:1/validate"
        self.register("down", closed, self.ca_pem)
        out = self.k("create", "-f", "-", input=config_map("refused"), check=False)
        self.assertNotEqual(out.returncode, 0)
        self.assertIn('failed calling webhook "down.example.com": failed to call webhook: Post '
                      '"https://127.0.0.1:1/validate?timeout=3s"', out.stderr)
        self.k("patch", "validatingwebhookconfiguration", "down", "--type=json", "-p",
               '[{"op": "replace", "path": "/webhooks/0/failurePolicy", "value": "Ignore"}]')
        self.k("create", "-f", "-", input=config_map("ignored"))

    def test_a_server_the_ca_bundle_does_not_vouch_for_is_not_called(self):
        other = tempfile.mkdtemp(dir=self.cluster.dir)
        other_ca, _, _ = make_certs(other)
        with open(other_ca) as f:
            self.register("wrong-ca", "https://127.0.0.1:%d/validate" % self.webhook.port,
                          f.read())
        out = self.k("create", "-f", "-", input=config_map("unverified"), check=False)
        self.assertNotEqual(out.returncode, 0)
        self.assertIn("tls: failed to verify certificate", out.stderr)


if __name__ == "__main__":
    unittest.main()
