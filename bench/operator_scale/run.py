#!/usr/bin/python3
"""bench/operator_scale: the operator's memory and status lag (SPEC.md §9).

1. Starts a test cluster (tests/cluster) with the CRD and the chart's RBAC, cordons its node and
   starts parallelrun-operator. Creates N ParallelRunJobs at once (default 500); their pods stay
   Pending. Measures the time until every job has its children (Secret, ConfigMap, Service,
   coordinator and worker pods) and a status saying Unschedulable, and the operator's RSS
   (VmRSS of /proc/<pid>/status) before and after. Target: RSS <= 30 MiB with 500 jobs.
   Prints where the RSS is (/proc/<pid>/smaps: the binary, shared libraries, the main malloc
   arena, thread stacks, other anonymous memory).
   --baseline BIN: phase 1 runs first with another parallelrun-operator binary (e.g. main's,
   copied aside), in its own cluster, then with this build's; prints the RSS ratio.
2. Deletes them, uncordons, runs M small jobs (default 20) at once and measures the status lag:
   for every job, the time from its coordinator's end (the container's finishedAt) to the
   moment a watch sees the job Succeeded. Target: <= 5 s.

usage: bench/operator_scale/run.py [--jobs 500] [--running 20] [--build build]
                                   [--baseline OPERATOR_BIN]
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import yaml
from datetime import datetime, timezone

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))


def rss_mib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    return 0.0


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def memory_breakdown(pid):
    """Where the operator's RSS is, from /proc/<pid>/smaps (KiB): the operator binary, shared
    libraries, the main malloc arena ([heap]), thread stacks (8 MiB anonymous mappings) and other
    anonymous memory (further malloc arenas and mmap'd blocks)."""
    exe = os.readlink(f"/proc/{pid}/exe").removesuffix(" (deleted)")
    parts = {"binary": 0, "libraries": 0, "heap": 0, "thread stacks": 0, "other anon": 0}
    name, size = "", 0
    with open(f"/proc/{pid}/smaps") as f:
        for line in f:
            fields = line.split()
            if "-" in fields[0] and len(fields) >= 5 and ":" not in fields[0]:
                lo, hi = (int(x, 16) for x in fields[0].split("-"))
                size, name = (hi - lo) // 1024, fields[5] if len(fields) > 5 else ""
            elif fields[0] == "Rss:":
                kib = int(fields[1])
                if name == exe:
                    parts["binary"] += kib
                elif name.startswith("/"):
                    parts["libraries"] += kib
                elif name in ("[heap]", "[stack]"):
                    parts["heap" if name == "[heap]" else "thread stacks"] += kib
                elif name == "" and size == 8192:
                    parts["thread stacks"] += kib
                else:
                    parts["other anon"] += kib
    with open(f"/proc/{pid}/status") as f:
        threads = [line.split()[1] for line in f if line.startswith("Threads:")][0]
    return ", ".join(f"{k} {v / 1024:.1f}" for k, v in parts.items()) + \
        f" MiB; {threads} threads"


def scale_phase(e2e, operator_bin, jobs, label):
    """Phase 1 in a fresh cluster with `operator_bin`; returns the cluster (still up) and the RSS
    with `jobs` jobs in MiB."""
    e2e.OPERATOR_BIN = operator_bin
    c = e2e.OperatorCluster()
    try:
        pid = c.operator.pid
        e2e.wait_until(lambda: "leader" in c.operator_log().lower(), 60, "leadership")
        time.sleep(2)
        idle = rss_mib(pid)
        idle_parts = memory_breakdown(pid)
        cpu_before = cpu_seconds(pid)
        c.kubectl("cordon", "testcluster-node")
        work = tempfile.mkdtemp(prefix="opscale-", dir=c.dir)
        e2e.make_slow_data(work, files=4)
        docs = [e2e.cluster_manifest("pending-%03d" % i, work, e2e.slow_source(4), node_count=1,
                                     processes=1) for i in range(jobs)]
        started = time.monotonic()
        c.kubectl("create", "-f", "-", input=yaml.safe_dump_all(docs),
                  timeout=600)
        created = time.monotonic() - started

        def all_explained():
            out = c.kubectl("get", "prj", "-o", "json", timeout=120)
            items = json.loads(out.stdout)["items"]
            ok = 0
            for job in items:
                for cond in job.get("status", {}).get("conditions", []):
                    if cond["type"] == "Scheduled" and cond["reason"] == "Unschedulable":
                        ok += 1
            return ok == jobs
        e2e.wait_until(all_explained, 1800, "every job to report Unschedulable")
        settled = time.monotonic() - started
        pods = json.loads(c.kubectl("get", "pods", "-o", "json", timeout=120).stdout)["items"]
        time.sleep(2)
        rss = rss_mib(pid)
        cpu = cpu_seconds(pid) - cpu_before
        print(f"operator_scale [{label}]: {jobs} jobs created in {created:.1f} s; every job had "
              f"its children and an Unschedulable status after {settled:.1f} s; {len(pods)} pods; "
              f"operator CPU {cpu:.1f} s ({1000 * cpu / jobs:.1f} ms per job; the rest of "
              f"the wall time is the test cluster's API server and kubelet)")
        print(f"operator_scale [{label}]: RSS idle {idle:.1f} MiB, with {jobs} jobs "
              f"{rss:.1f} MiB (target <= 30 MiB: ratio {rss / 30.0:.2f})")
        print(f"operator_scale [{label}]: RSS idle: {idle_parts}")
        print(f"operator_scale [{label}]: RSS with {jobs} jobs: {memory_breakdown(pid)}")
        sys.stdout.flush()
        return c, rss
    except BaseException:
        print(c.operator_log()[-3000:], file=sys.stderr)
        c.down()
        raise


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=500)
    parser.add_argument("--running", type=int, default=20)
    parser.add_argument("--build", default=os.path.join(ROOT, "build"))
    parser.add_argument("--baseline", metavar="OPERATOR_BIN",
                        help="another parallelrun-operator binary: phase 1 runs first with it (in "
                             "its own cluster), then with this build's, and prints the RSS ratio")
    args = parser.parse_args()
    bin_dir = os.path.join(os.path.abspath(args.build), "bin")
    os.environ["PARALLELRUN_BIN"] = os.path.join(bin_dir, "parallelrun")
    os.environ["OPERATOR_BIN"] = os.path.join(bin_dir, "parallelrun-operator")
    os.environ["TESTCLUSTER_BIN"] = os.path.join(bin_dir, "testcluster")
    sys.path.insert(0, os.path.join(ROOT, "tests", "operator"))
    import test_operator_e2e as e2e

    base_rss = None
    if args.baseline:
        base, base_rss = scale_phase(e2e, os.path.abspath(args.baseline), args.jobs, "baseline")
        base.down()
    c, rss = scale_phase(e2e, os.environ["OPERATOR_BIN"], args.jobs, "this build")
    try:
        pid = c.operator.pid
        if base_rss is not None:
            print(f"operator_scale: RSS with {args.jobs} jobs, this build / baseline: "
                  f"{rss:.1f} / {base_rss:.1f} MiB = ratio {rss / base_rss:.2f}")
        if args.running == 0:
            return
        c.kubectl("delete", "prj", "--all", "--wait=true", "--timeout=600s", timeout=700)
        c.kubectl("uncordon", "testcluster-node")
        work = tempfile.mkdtemp(prefix="opscale-run-", dir=c.dir)
        e2e.make_slow_data(work, files=40)
        seen = {}
        from kubernetes import client, config, watch
        api = client.CustomObjectsApi(config.new_client_from_config(
            config_file=c.cluster.kubeconfig))

        def watcher():
            w = watch.Watch()
            for ev in w.stream(api.list_namespaced_custom_object, "parallelrun.io", "v1alpha1",
                               "default", "parallelrunjobs", timeout_seconds=900):
                obj = ev["object"]
                if (obj.get("status") or {}).get("phase") == "Succeeded":
                    seen.setdefault(obj["metadata"]["name"], time.time())
                if len(seen) == args.running:
                    w.stop()
        t = threading.Thread(target=watcher, daemon=True)
        t.start()
        docs = []
        for i in range(args.running):
            data = os.path.join(work, "job%02d" % i)
            shutil.copytree(os.path.join(work, "code"), os.path.join(data, "code"))
            shutil.copytree(os.path.join(work, "documents"), os.path.join(data, "documents"))
            docs.append(e2e.cluster_manifest("run-%02d" % i, data, e2e.slow_source(40),
                                             node_count=1, processes=1))
        c.kubectl("create", "-f", "-", input=yaml.safe_dump_all(docs))
        t.join(timeout=900)
        lags = []
        for i in range(args.running):
            name = "run-%02d" % i
            pod = json.loads(c.kubectl("get", "pod", f"{name}-coordinator", "-o",
                                       "json").stdout)
            finished = pod["status"]["containerStatuses"][0]["state"]["terminated"]["finishedAt"]
            end = datetime.strptime(finished, "%Y-%m-%dT%H:%M:%SZ").replace(
                tzinfo=timezone.utc).timestamp()
            # finishedAt has one-second resolution, so this is an upper bound of the lag.
            lags.append(max(0.0, seen[name] - end))
        lags.sort()
        worst = lags[-1]
        print(f"operator_scale: status lag for {args.running} running jobs: median "
              f"{lags[len(lags) // 2]:.2f} s, max {worst:.2f} s (target <= 5 s: ratio "
              f"{worst / 5.0:.2f}); operator RSS {rss_mib(pid):.1f} MiB")
    finally:
        c.down()


if __name__ == "__main__":
    main()
