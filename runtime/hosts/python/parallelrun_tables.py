"""The Python host's tabular inputs: the DataFrame of the rows a request names (byte ranges of a CSV
or JSON-lines file, or a partition's segments of several files), each CSV file read with the dtypes
pandas infers for the whole file (parallelrun_schemas) and the input's columnTypes.

Imported by the host, with pandas, for the first tabular request only: a job over file inputs
never pays for it.
"""

import io
import os

import parallelrun_schemas

_COLUMN_TYPES = {"string": object, "int64": "int64", "float64": "float64", "bool": "bool"}

_BOOL_TEXT = {"True": True, "TRUE": True, "true": True, "False": False, "FALSE": False,
              "false": False}  # what pandas.read_csv reads as bools


def _cast(frame, schema, parsed):
    """The file's dtypes (`schema`) on the columns of a mini-batch's `frame` not already `parsed`
    with a given type, converted as pandas.read_csv does when it joins chunks of the file whose
    dtypes differ (ints to floats, bools to numbers). A mini-batch that straddles two such chunks
    has strings there (`True` and `1`): they are converted as the chunks' values would be."""
    for column, dtype in schema.items():
        if column not in parsed and column in frame.columns and frame[column].dtype != dtype:
            values = frame[column]
            if values.dtype.kind == "O" and dtype.kind in "iufb":
                values = values.map(lambda v: _BOOL_TEXT.get(v, v) if isinstance(v, str) else v)
            frame[column] = values.astype(dtype)
    return frame


class TableReader:
    """Reads the tabular mini-batches of one worker (see the module's text)."""

    def __init__(self, pd, column_types, output_dir, who):
        self.pd = pd
        self.column_types = column_types  # {input name: {column: type}}, from columnTypes
        self.schemas = parallelrun_schemas.SchemaStore(pd, output_dir, who)

    def read(self, req):
        """The DataFrame of the rows a tabular request names."""
        pd = self.pd
        segments = req.get("segments")
        if not segments:
            return self.read_ranges(req, req["file"], req.get("format", "csv"),
                                    req.get("header_end", 0), [(req["begin"], req["end"])])
        # Partition keys: the partition's rows, file by file, each file with its own schema.
        frames = []
        for seg in segments:
            path = seg["file"]
            st = os.stat(path)
            if (seg.get("file_size", -1) >= 0
                    and (st.st_size, st.st_mtime_ns) != (seg["file_size"], seg["file_mtime_ns"])):
                raise OSError("input file %s changed after the job was planned (size %d, mtime "
                              "%d ns then; size %d, mtime %d ns now): its partitions' rows "
                              "would be wrong; rerun the job on unchanging inputs"
                              % (path, seg["file_size"], seg["file_mtime_ns"], st.st_size,
                                 st.st_mtime_ns))
            frames.append(self.read_ranges(req, path, seg.get("format", "csv"),
                                           seg.get("header_end", 0), seg["ranges"]))
        if len(frames) == 1:
            return frames[0]
        return pd.concat(frames, ignore_index=True)

    def read_ranges(self, req, path, fmt, header_end, ranges):
        """The DataFrame of the rows in byte `ranges` of `path` (after its header)."""
        pd = self.pd
        parts = []
        with open(path, "rb") as f:
            head = f.read(header_end) if header_end > 0 else b""
            if len(head) != header_end:
                raise OSError("input file %s is shorter than when the job was planned: bytes "
                              "0..%d were expected, only %d could be read (was the file "
                              "changed?)" % (path, header_end, len(head)))
            for begin, end in ranges:
                f.seek(begin)
                piece = f.read(end - begin)
                if len(piece) != end - begin:
                    # A file cut or replaced after planning: reading on would silently lose rows.
                    raise OSError("input file %s is shorter than when the job was planned: bytes "
                                  "%d..%d were expected, only %d could be read (was the file "
                                  "changed?)" % (path, begin, end, len(piece)))
                parts.append(piece)
        body = b"".join(parts)
        if fmt == "jsonl":
            if not body.strip():
                return pd.DataFrame()
            return pd.read_json(io.BytesIO(body), lines=True)
        header = 0 if header_end > 0 else None
        schema = self.file_dtypes(path, header)
        # Strings stay strings (a column that is object anywhere in the file); the user's
        # columnTypes are parsed as such.
        dtypes = {c: t for c, t in schema.items() if t.kind == "O"}
        dates = self.apply_column_types(req, schema, dtypes, path)
        if not body.strip():
            if header_end > 0:
                frame = pd.read_csv(io.BytesIO(head), header=0, dtype=dtypes, parse_dates=dates)
                return _cast(frame, schema, dtypes)
            return pd.DataFrame()
        frame = pd.read_csv(io.BytesIO(head + body), header=header, dtype=dtypes,
                            parse_dates=dates)
        return _cast(frame, schema, dtypes)

    def apply_column_types(self, req, schema, dtypes, path):
        """Adds the input's columnTypes to `dtypes` (the file's columns: `schema`); returns the
        columns to parse as dates."""
        wanted = self.column_types.get(req.get("input_name", ""))
        if not wanted:
            return False
        columns = {str(c): c for c in schema}
        missing = [name for name in wanted if name not in columns]
        if missing:
            raise ValueError("columnTypes of input %r names %s, which %s does not have (its "
                             "columns: %s)" % (req.get("input_name"), ", ".join(missing),
                                               path, ", ".join(columns)))
        dates = []
        for name, kind in wanted.items():
            column = columns[name]
            if kind == "datetime":
                dates.append(column)
                dtypes[column] = object
            else:
                dtypes[column] = _COLUMN_TYPES[kind]
        return dates or False

    def file_dtypes(self, path, header):
        """The column dtypes pandas.read_csv infers for the whole file, so that every mini-batch
        of a file has one schema: parsed once per job and file (parallelrun_schemas)."""
        return self.schemas.dtypes(path, header)
