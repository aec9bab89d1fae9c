#!/usr/bin/python3
"""bench/local_throughput: parallelrun local mode against multiprocessing.Pool(2).map.

Both sides run the same ~5 ms CPU function over the same 20,000 files on the same interpreter
(/usr/bin/python3), with 2 processes, in the same invocation; parallelrun uses mini-batches of 10
and Pool.map chunks of 10. Prints both wall times and the ratio (SPEC.md §9 target: <= 1.1), then
a second job of ~10 ms mini-batches and the worker utilisation it reaches (target >= 90 %).

usage: bench/local_throughput/run.py [--items N] [--cpu-ms MS] [--bin build/bin/parallelrun]
"""
import argparse
import csv
import json
import multiprocessing
import os
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))

WORK = """
import hashlib
def work(path, rounds):
    h = hashlib.sha256(open(path, 'rb').read())
    for _ in range(rounds):
        h = hashlib.sha256(h.digest())
    return h.hexdigest()[:16]
"""

ENTRY = WORK + """
import argparse
ROUNDS = 0
def init():
    global ROUNDS
    p = argparse.ArgumentParser(); p.add_argument('--rounds', type=int); a, _ = p.parse_known_args()
    ROUNDS = a.rounds
def run(mini_batch):
    return [work(p, ROUNDS) for p in mini_batch]
"""

namespace = {}
exec(WORK, namespace)
work = namespace["work"]


def _work_star(args):
    return work(*args)


def calibrate(path, cpu_ms):
    rounds = 1000
    while True:
        t = time.process_time()
        work(path, rounds)
        dt = time.process_time() - t
        if dt > 0.05:
            return max(1, int(rounds * (cpu_ms / 1000.0) / dt))
        rounds *= 2


def make_job(tmp, n, rounds, mini_batch, name):
    data = os.path.join(tmp, "data")
    if not os.path.isdir(data):
        os.makedirs(data)
        for i in range(n):
            with open(os.path.join(data, f"{i:06d}.bin"), "wb") as f:
                f.write(i.to_bytes(8, "little"))
    code = os.path.join(tmp, "code")
    os.makedirs(code, exist_ok=True)
    with open(os.path.join(code, "bench.py"), "w") as f:
        f.write(ENTRY)
    manifest = {"apiVersion": "parallelrun.io/v1alpha1", "kind": "ParallelRunJob",
                "metadata": {"name": name},
                "spec": {"entryScript": "bench.py", "sourceDirectory": {"path": "code/"},
                         "inputs": [{"name": "data", "type": "file", "source": {"path": "data/"}}],
                         "output": {"path": f"out-{name}/"},
                         "arguments": ["--rounds", str(rounds)],
                         "miniBatchSize": mini_batch, "nodeCount": 1, "processCountPerNode": 2,
                         "resourceMonitorInterval": 0}}
    path = os.path.join(tmp, f"{name}.yaml")
    with open(path, "w") as f:
        json.dump(manifest, f)
    return path, data


def run_parallelrun(binary, manifest):
    t = time.monotonic()
    proc = subprocess.run([binary, "run", manifest], capture_output=True, text=True)
    wall = time.monotonic() - t
    if proc.returncode != 0:
        sys.exit(f"parallelrun failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return wall


def utilisation(out_dir, wall, workers):
    with open(os.path.join(out_dir, "logs", "sys", "job_report", "processed_mini-batches.csv")) as f:
        run_s = sum(float(r["run_s"]) for r in csv.DictReader(f))
    return run_s / (wall * workers)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--items", type=int, default=20000)
    ap.add_argument("--cpu-ms", type=float, default=5.0)
    ap.add_argument("--bin", default=os.path.join(ROOT, "build", "bin", "parallelrun"))
    args = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="parallelrun-bench-")
    try:
        manifest, data = make_job(tmp, args.items, 0, 10, "throughput")
        files = sorted(os.path.join(data, f) for f in os.listdir(data))
        rounds = calibrate(files[0], args.cpu_ms)
        manifest, _ = make_job(tmp, args.items, rounds, 10, "throughput")

        t = time.monotonic()
        with multiprocessing.get_context("fork").Pool(2) as pool:
            pool.map(_work_star, [(p, rounds) for p in files], chunksize=10)
        pool_wall = time.monotonic() - t

        pr_wall = run_parallelrun(args.bin, manifest)
        ratio = pr_wall / pool_wall
        print(f"local_throughput: {args.items} items x {args.cpu_ms:g} ms CPU, 2 processes: "
              f"Pool(2).map {pool_wall:.2f} s, parallelrun {pr_wall:.2f} s, ratio {ratio:.3f} "
              f"(target <= 1.1)")

        # ~10 ms mini-batches: 10 items of ~1 ms each.
        rounds_1ms = max(1, rounds // int(max(1, args.cpu_ms)))
        manifest10, _ = make_job(tmp, args.items, rounds_1ms, 10, "short")
        wall10 = run_parallelrun(args.bin, manifest10)
        util = utilisation(os.path.join(tmp, "out-short"), wall10, 2)
        print(f"local_throughput: ~10 ms mini-batches: {args.items // 10} mini-batches in {wall10:.2f} s, "
              f"worker utilisation {util * 100:.1f} % (target >= 90 %)")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
