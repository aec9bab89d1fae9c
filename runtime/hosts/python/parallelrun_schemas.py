"""One schema per tabular file: the column dtypes that ``pandas.read_csv`` infers for a whole CSV
file, found once per job and file and shared by the job's workers through the output folder.

Every mini-batch of a CSV file is read with these dtypes, so a column that is ``1``, ``2`` in one
mini-batch and ``A7`` in another holds strings in all of them. Finding them takes a parse of the
whole file. A worker that needs a file's dtypes:

1. uses what it found before (a small cache per process, by path, size, mtime and header);
2. else reads ``<output>/.parallelrun/schemas/<key>.json``, written by the worker of the job that
   parsed the file first (``<key>``: a hash of the path, size, mtime, header and pandas' version);
3. else takes an exclusive lock on that key (a one-byte ``lockf`` lock in
   ``schemas/lock``; such locks work between nodes on NFS), looks for the JSON again (another worker
   may have written it meanwhile), and only then parses the file, in chunks of about 8 MiB of text
   that are whole numbers of pandas' own chunks (infer_dtypes), and writes the JSON atomically (a
   temporary name, then ``rename``).

So a file is parsed once per job however many workers read its mini-batches: the others wait for
that parse instead of repeating it. A worker that dies while parsing loses its lock with it, and the
next one parses. Where the folder or its locks are unavailable (a read-only or full disk, a file
system without byte-range locks) each worker parses the file itself: slower, the same dtypes.
"""

import errno
import fcntl
import hashlib
import json
import logging
import os
import time
import warnings

CHUNK_BYTES = 8 << 20  # text per chunk while parsing a whole file
CACHE_FILES = 64  # files whose dtypes one process keeps
SCHEMAS_DIR = os.path.join(".parallelrun", "schemas")


def pandas_chunk_rows(columns):
    """The rows that pandas.read_csv (C engine, low_memory, the default) infers dtypes over at a
    time for a table `columns` wide: its TextReader.buffer_lines."""
    heuristic = 2 ** 20 // max(columns, 1)
    rows = 1
    while rows * 2 < heuristic:
        rows *= 2
    return rows


def merge_dtype(a, b):
    """The dtype of a column whose chunks have dtypes `a` and `b` once pandas.read_csv joins them
    (numpy.concatenate: ints and floats make floats, signed and unsigned ints make floats, bools
    and numbers make numbers, anything with strings is object)."""
    import numpy
    if a is None or a == b:
        return b
    return numpy.concatenate([numpy.empty(0, a), numpy.empty(0, b)]).dtype


def infer_dtypes(pd, path, header, chunk_bytes=CHUNK_BYTES):
    """({column: dtype}, rows) as ``pandas.read_csv(path, header=header)`` gives them, parsing
    `path` in chunks of about `chunk_bytes` of text. A chunk is a whole number of pandas' own
    chunks, whose dtypes pandas infers one by one and then joins as merge_dtype does, so the
    result is pandas' for every file, whatever its size."""
    columns = len(pd.read_csv(path, header=header, nrows=1).columns)
    unit = pandas_chunk_rows(columns)
    with open(path, "rb") as f:
        head = f.read(64 << 10)
    lines = max(head.count(b"\n"), head.count(b"\r"), 1)
    rows_per_chunk = unit * max(1, chunk_bytes * lines // max(len(head), 1) // unit)
    merged, rows = {}, 0
    with warnings.catch_warnings():
        # pandas' DtypeWarning about a column whose chunks disagree: merge_dtype decides.
        warnings.simplefilter("ignore", pd.errors.DtypeWarning)
        for chunk in pd.read_csv(path, header=header, chunksize=rows_per_chunk):
            rows += len(chunk)
            for column, dtype in chunk.dtypes.items():
                merged[column] = merge_dtype(merged.get(column), dtype)
    return merged, rows


def _encode(dtypes, rows, seconds, who, key):
    return json.dumps({"file": key[0], "size": key[1], "mtime_ns": key[2], "header": key[3],
                       "rows": rows, "seconds": round(seconds, 3), "by": who,
                       "columns": [[c, str(t)] for c, t in dtypes.items()]})


def _decode(text, key):
    """The dtypes of a schema file, or None when it is not one for `key` (torn, another file)."""
    import numpy
    try:
        d = json.loads(text)
        if [d["file"], d["size"], d["mtime_ns"], d["header"]] != list(key):
            return None
        return {c: numpy.dtype(t) for c, t in d["columns"]}
    except (ValueError, KeyError, TypeError):
        return None


class SchemaStore:
    """The dtypes of whole CSV files, shared by the workers of one job (see the module's text)."""

    def __init__(self, pd, output_dir, who):
        self.pd = pd
        self.dir = os.path.join(output_dir, SCHEMAS_DIR) if output_dir else None
        self.who = who
        self.cache = {}
        self.log = logging.getLogger("parallelrun")

    def dtypes(self, path, header):
        st = os.stat(path)
        key = (path, st.st_size, st.st_mtime_ns, header)
        found = self.cache.get(key)
        if found is None:
            found = self._shared(key)
            if len(self.cache) >= CACHE_FILES:
                # Mini-batches mostly come one file at a time; partitions visit a few in turn.
                self.cache.pop(next(iter(self.cache)))
            self.cache[key] = found
        return found

    def _parse(self, key):
        t0 = time.perf_counter()
        dtypes, rows = infer_dtypes(self.pd, key[0], key[3])
        seconds = time.perf_counter() - t0
        self.log.debug("parallelrun: parsed the whole of %s (%d rows) in %.2f s to infer its "
                       "column types", key[0], rows, seconds)
        return dtypes, rows, seconds

    def _shared(self, key):
        if self.dir is None:
            return self._parse(key)[0]
        # pandas' version too: another pandas (a new image, a resumed job) may infer otherwise.
        text = json.dumps(list(key) + [self.pd.__version__])
        name = hashlib.sha256(text.encode()).hexdigest()[:40]
        path = os.path.join(self.dir, name + ".json")
        found = self._read(path, key)
        if found is not None:
            return found
        try:
            os.makedirs(self.dir, exist_ok=True)
            lock = os.open(os.path.join(self.dir, "lock"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC,
                           0o644)
        except OSError:
            return self._parse(key)[0]
        try:
            offset = int(name[:8], 16) & 0x7FFFFFFF
            try:
                fcntl.lockf(lock, fcntl.LOCK_EX, 1, offset, os.SEEK_SET)
            except OSError as e:
                if e.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.EINVAL, errno.EACCES):
                    raise
            found = self._read(path, key)  # written while this worker waited for the lock
            if found is not None:
                return found
            dtypes, rows, seconds = self._parse(key)
            self._write(path, _encode(dtypes, rows, seconds, self.who, key))
            return dtypes
        finally:
            os.close(lock)  # releases the lock

    @staticmethod
    def _read(path, key):
        try:
            with open(path, encoding="utf-8") as f:
                return _decode(f.read(), key)
        except OSError:
            return None

    @staticmethod
    def _write(path, text):
        tmp = "%s.%d.tmp" % (path, os.getpid())
        try:
            with open(tmp, "w", encoding="utf-8") as f:
                f.write(text)
            os.rename(tmp, path)
        except OSError:
            try:
                os.unlink(tmp)
            except OSError:
                pass
