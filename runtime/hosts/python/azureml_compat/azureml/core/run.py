"""``azureml.core.run.Run.get_context()``: an offline run that records what the script logs.

Every ``log``, ``log_list``, ``log_row``, ``log_table``, ``tag`` and ``set_tags`` call appends one
JSON line to ``<output>/logs/user/metrics/<node>/<process>.jsonl``:
``{"time": ..., "kind": "log", "name": ..., "value": ..., "description": ...}``.
"""

import json
import os
import threading
import time
import uuid

__all__ = ["Run"]


def _jsonable(value):
    """numpy scalars and arrays, pandas values: their Python value; anything else: str()."""
    for method in ("tolist", "item"):
        if hasattr(value, method):
            try:
                return getattr(value, method)()
            except (TypeError, ValueError):
                pass
    return str(value)


def _utc_now():
    t = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + ".%03dZ" % (int(t * 1000) % 1000)


class Run:
    _context = None
    _lock = threading.Lock()

    def __init__(self):
        env = os.environ
        node = env.get("PARALLELRUN_NODE", "127.0.0.1")
        process = env.get("PARALLELRUN_PROCESS", "process000")
        logs = env.get("PARALLELRUN_LOG_DIR", os.path.join(os.getcwd(), "logs"))
        self.path = os.path.join(logs, "user", "metrics", node, process + ".jsonl")
        self.id = "OfflineRun_" + str(uuid.uuid4())
        self._tags = {}

    @classmethod
    def get_context(cls, allow_offline=True, **_kwargs):
        """The run of this worker process (the same object every time)."""
        with cls._lock:
            if cls._context is None:
                cls._context = cls()
            return cls._context

    def _append(self, record):
        record = dict(time=_utc_now(), **record)
        line = json.dumps(record, default=_jsonable) + "\n"
        with Run._lock:
            os.makedirs(os.path.dirname(self.path), exist_ok=True)
            with open(self.path, "a", encoding="utf-8") as f:
                f.write(line)

    def log(self, name, value, description=""):
        self._append({"kind": "log", "name": name, "value": value, "description": description})

    def log_list(self, name, value, description=""):
        self._append({"kind": "log_list", "name": name, "value": list(value),
                      "description": description})

    def log_row(self, name, description=None, **kwargs):
        self._append({"kind": "log_row", "name": name, "value": kwargs,
                      "description": description or ""})

    def log_table(self, name, value, description=""):
        self._append({"kind": "log_table", "name": name, "value": dict(value),
                      "description": description})

    def tag(self, key, value=None):
        self._tags[key] = value
        self._append({"kind": "tag", "name": key, "value": value})

    def set_tags(self, tags):
        for key, value in dict(tags).items():
            self.tag(key, value)

    def get_tags(self):
        return dict(self._tags)

    def flush(self, *_args, **_kwargs):
        """Every record is written when it is logged: nothing to flush."""

    def complete(self, *_args, **_kwargs):
        """An offline run has no service to tell."""
