#include "runtime/logs/readme_text.h"

namespace parallelrun::rt {

std::string LogsReadmeText() {
  return R"(parallelrun logs
================

Where to look first
-------------------
1. job_result.txt: did the job succeed? If not, the reason, the message and where to look next.
2. user/error.txt: one line per failed attempt of your entry script (time, node, process,
   mini-batch, status, error). The full tracebacks are in user/error/<node>/<process>.txt.
3. sys/job_report/processed_mini-batches.csv: one row per attempt of every mini-batch.
4. job_progress_overview.<yyyymmddhh>.txt: the newest file tells how far the job got.

Files
-----
readme.txt
    This file.
job_progress_overview.<yyyymmddhh>.txt
    Timestamped progress lines in UTC: scheduling started and finished (mini-batch and item
    totals), "Processed X of Y mini batches in H:MM:SS, estimated H:MM:SS remaining", warnings
    when no mini-batch completes, output assembly, and the final result. A new file is started at
    every coordinator start and every UTC day; read the newest.
job_result.txt
    First line "Succeeded" or "Failed: <Reason>", then key: value lines: exit_code, message,
    mini-batch and item counts, duration, output file and where to look first. The same data is
    in ../.parallelrun/result.json.
sys/master_role.<n>.txt
    The coordinator's log (time|LEVEL|pid|thread|message): planning, nodes, leases, retries,
    thresholds. A new file per coordinator start (n counts the starts).
sys/node/<node>/<process>.txt
    One record per mini-batch a worker processed: node, pid, items total/succeeded/failed, start,
    duration, CPU time and time spent in run().
sys/node/<node>/_main.txt
    The node agent's log: worker starts, exits with their codes, restarts.
sys/error/<node>/<process>.txt
    Per-attempt error records (RUN_TIMEOUT, RUN_EXCEPTION, INIT_FAILED, ...).
sys/job_report/processed_mini-batches.csv
    One CSV row per attempt: mini_batch_id, attempt, accepted (1 for the one attempt whose result
    counts), node, process, start_utc, total, succeeded, failed, elapsed_s, cpu_s, run_s, status,
    error, detail. Status is one of RUN_DONE, RUN_EXCEPTION, RUN_TIMEOUT, RUN_WRONG_TYPE,
    WORKER_DIED, LEASE_EXPIRED, CANCELLED, INIT_FAILED, INIT_TIMEOUT, or CARRIED_OVER (retryFrom:
    the mini-batch completed in the earlier run named in detail, its rows were copied from there
    and it did not run again).
user/entry_script_log/<node>/<process>.log.txt
    What your script logged through EntryScript().logger (honours loggingLevel).
user/stdout/<node>/<process>.stdout.txt, user/stderr/<node>/<process>.stderr.txt
    Your worker processes' standard output and error (print() lands here).
user/error.txt
    Summary of errors in your entry script, one line per failed attempt.
user/error/<node>/<process>.txt
    Full tracebacks per worker process.
perf/<node>/
    node_resource_usage.csv, node_disk_usage.csv, processes_resource_usage.csv and
    os/%Y%m%d%H/processes_%M, sampled every resourceMonitorInterval seconds.

<node> is the node's IP (locally 127.0.0.<i+1>); <process> is processNNN.
)";
}

}  // namespace parallelrun::rt
