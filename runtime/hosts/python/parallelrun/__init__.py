"""What an entry script sees of parallelrun.

``EntryScript()`` is a per-process singleton describing the worker the script runs in: its node,
process name and the job's folders, plus a ``logger`` that writes to
``<output>/logs/user/entry_script_log/<node>/<process>.log.txt`` at the job's ``loggingLevel``.

The values come from the ``PARALLELRUN_*`` variables the agent sets for every worker. Outside a
worker (a script imported by hand while debugging) the same attributes exist with local defaults:
node ``127.0.0.1``, process ``process000``, output folder = the current folder.
"""

import os
import threading
import time

__all__ = ["EntryScript"]


class EntryScript:
    """Per-process singleton: every ``EntryScript()`` returns the same object.

    Attributes:
      node_id:     the node's name (its IP: the pod IP, locally 127.0.0.<i+1>).
      agent_name:  the worker's process name, ``processNNN``.
      output_dir:  the job's output folder (exists; scripts may write their own files there).
      working_dir: a scratch folder private to this worker process (exists, writable).
      log_dir:     ``<output>/logs/user/entry_script_log/<node>/``, created on first access;
                   prefix file names written there with ``agent_name``.
      logger:      a ``logging.Logger`` writing timestamped lines to
                   ``<log_dir>/<agent_name>.log.txt``; the file is created on first use.
    """

    _instance = None
    _lock = threading.Lock()

    def __new__(cls):
        with cls._lock:
            if cls._instance is None:
                inst = super().__new__(cls)
                inst._setup()
                cls._instance = inst
            return cls._instance

    def _setup(self):
        env = os.environ
        self.node_id = env.get("PARALLELRUN_NODE", "127.0.0.1")
        self.agent_name = env.get("PARALLELRUN_PROCESS", "process000")
        self.output_dir = env.get("PARALLELRUN_OUTPUT_DIR", os.getcwd())
        self._logs_root = env.get("PARALLELRUN_LOG_DIR", os.path.join(self.output_dir, "logs"))
        self.working_dir = env.get("PARALLELRUN_WORKING_DIR", os.getcwd())
        self._level_name = env.get("PARALLELRUN_LOGGING_LEVEL", "INFO").upper()
        self._log_dir = os.path.join(self._logs_root, "user", "entry_script_log", self.node_id)
        self._logger = None

    @property
    def log_dir(self):
        os.makedirs(self._log_dir, exist_ok=True)
        return self._log_dir

    @property
    def logger(self):
        # Built on first use so scripts that never log leave no empty files behind (nor import
        # logging: that is a worker's start too).
        if self._logger is None:
            import logging  # noqa: F401 - before the lock: an import takes the import lock
            with EntryScript._lock:
                if self._logger is None:
                    self._logger = self._make_logger()
        return self._logger

    def _make_logger(self):
        import logging
        levels = {"DEBUG": logging.DEBUG, "INFO": logging.INFO, "WARNING": logging.WARNING}
        logger = logging.getLogger("parallelrun.entry_script")
        logger.setLevel(levels.get(self._level_name, logging.INFO))
        # Its own file only: the root logger goes to the worker's stdout log already.
        logger.propagate = False
        path = os.path.join(self.log_dir, self.agent_name + ".log.txt")
        handler = logging.FileHandler(path, mode="a", encoding="utf-8", delay=True)
        formatter = logging.Formatter(
            "%(asctime)s.%(msecs)03d|%(levelname)s|%(process)d|%(threadName)s|%(message)s",
            datefmt="%Y-%m-%d %H:%M:%S")
        formatter.converter = time.gmtime  # UTC, like every other log of the job
        handler.setFormatter(formatter)
        logger.addHandler(handler)
        return logger
