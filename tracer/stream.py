"""Write and read the agent-tracer msgpack stream.

The records and their keys are specified in docs/format.md. The writer and
the reader check records against the same table (`FIELDS`), so a stream that
`StreamWriter` wrote is a stream that `read_stream` accepts.
"""

from __future__ import annotations

import logging
import os
import stat
from typing import Any, BinaryIO, Callable, Iterator, NamedTuple

import msgpack

from tracer.errors import StreamError

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1

# Reading limits. Every length that a corrupted stream can claim is checked
# against one of these. The read buffer grows to MAX_RECORD_BYTES as its
# maximum, and a string cannot be longer than its record. The longest
# strings the tracer writes are command lines. Linux limits argv and the
# environment together to a quarter of RLIMIT_STACK (execve(2)), which is
# 2 MiB with the default 8 MiB stack limit.
MAX_RECORD_BYTES = 4 << 20
# msgpack's C unpacker (measured with msgpack 1.2.4) allocates a list of the
# declared length before it reads the elements, and containers nest up to
# 1024 deep, so the worst case is this limit times 8 bytes times 1024:
# 8 MiB. It does not preallocate maps.
MAX_ARRAY_LENGTH = 1024
MAX_MAP_LENGTH = 65536
# Bytes read from the file at a time. msgpack would read min(1 MiB,
# max_buffer_size) by default; the buffer still grows to hold a larger record.
READ_SIZE = 64 << 10

# The writer flushes by itself once this many bytes of whole records wait.
FLUSH_THRESHOLD = 64 << 10


class Kind(NamedTuple):
    """A kind of value that a record key may hold."""

    description: str
    accepts: Callable[[Any], bool]


def _is_int(value: Any) -> bool:
    # bool is a subclass of int in Python, but msgpack keeps them apart.
    return type(value) is int


def _is_count(value: Any) -> bool:
    return _is_int(value) and value >= 0


def _is_number(value: Any) -> bool:
    return type(value) in (int, float)


def _is_counts_by_number(value: Any) -> bool:
    return isinstance(value, dict) and all(
        _is_int(nr) and _is_count(count) for nr, count in value.items()
    )


def _is_role_counters(value: Any) -> bool:
    if not isinstance(value, dict):
        return False

    return (
        _is_counts_by_number(value.get("syscalls", {}))
        and _is_counts_by_number(value.get("syscalls_compat", {}))
        and _is_count(value.get("cpu_ns", 0))
    )


def _is_role_rule(value: Any) -> bool:
    return isinstance(value, dict) and isinstance(value.get("name"), str)


INT = Kind("an integer", _is_int)
COUNT = Kind("a non-negative integer", _is_count)
POSITIVE_NUMBER = Kind("a positive number", lambda v: _is_number(v) and v > 0)
POSITIVE_INT = Kind("a positive integer", lambda v: _is_int(v) and v > 0)
STR = Kind("a string", lambda v: isinstance(v, str))
OPTIONAL_STR = Kind("a string or nil", lambda v: v is None or isinstance(v, str))
BOOL = Kind("a boolean", lambda v: isinstance(v, bool))
MAP = Kind("a map", lambda v: isinstance(v, dict))
STR_LIST = Kind(
    "a list of strings", lambda v: isinstance(v, list) and all(isinstance(s, str) for s in v)
)
ROLE_RULES = Kind(
    "a list of {name, rule} maps", lambda v: isinstance(v, list) and all(map(_is_role_rule, v))
)
LOST = Kind(
    "a map of counter name to non-negative integer",
    lambda v: isinstance(v, dict)
    and all(isinstance(k, str) and _is_count(n) for k, n in v.items()),
)
BUCKET_ROLES = Kind(
    "a map of role name to {syscalls, syscalls_compat, cpu_ns}",
    lambda v: isinstance(v, dict)
    and all(isinstance(k, str) and _is_role_counters(c) for k, c in v.items()),
)

# Keys of each record type: (key, kind, required). A key that is not
# required may be missing, but when present it must have its kind. Keys not
# listed here are allowed and ignored, so that later versions of schema 1 can
# add keys.
FIELDS: dict[str, tuple[tuple[str, Kind, bool], ...]] = {
    "header": (
        ("schema", INT, True),
        ("tool", STR, False),
        ("version", STR, False),
        ("host", STR, True),
        ("kernel", STR, False),
        ("cpus", POSITIVE_INT, False),
        ("arch", STR, True),
        ("compat_arch", OPTIONAL_STR, True),
        ("clock", MAP, False),
        ("start", INT, True),
        ("interval", POSITIVE_NUMBER, True),
        ("preset", OPTIONAL_STR, False),
        ("roles", ROLE_RULES, True),
        ("syscalls", BOOL, False),
        ("failed_execs", BOOL, False),
        ("options", MAP, False),
    ),
    "root": (
        ("ts", INT, True),
        ("pid", INT, True),
        ("role", STR, True),
        ("cmdline", STR, False),
        ("reason", STR, False),
    ),
    "task": (
        ("ts", INT, True),
        ("pid", INT, True),
        ("ppid", INT, False),
        ("role", STR, True),
        ("comm", STR, False),
        ("cmdline", STR, False),
    ),
    "fork": (
        ("ts", INT, True),
        ("pid", INT, True),
        ("ppid", INT, True),
        ("tid", INT, True),
        ("role", STR, True),
    ),
    "thread": (
        ("ts", INT, True),
        ("pid", INT, True),
        ("tid", INT, True),
        ("role", STR, True),
    ),
    "exec": (
        ("ts", INT, True),
        ("pid", INT, True),
        ("old_tid", INT, False),
        ("filename", STR, True),
        ("argv", STR_LIST, False),
        ("argv_truncated", BOOL, False),
        ("comm", STR, False),
        ("role", STR, True),
    ),
    "exec_failed": (
        ("ts", INT, True),
        ("pid", INT, True),
        ("tid", INT, False),
        ("filename", STR, True),
        ("argv", STR_LIST, False),
        ("argv_truncated", BOOL, False),
        ("errno", INT, True),
        ("role", STR, True),
    ),
    "exit": (
        ("ts", INT, True),
        ("pid", INT, True),
        ("role", STR, True),
    ),
    "bucket": (
        ("start", INT, True),
        ("end", INT, True),
        ("roles", BUCKET_ROLES, True),
        ("lost", LOST, False),
    ),
    "marker": (
        ("ts", INT, True),
        ("name", STR, True),
        ("phase", STR, False),
        ("id", STR, False),
        ("detail", MAP, False),
    ),
    "notice": (
        ("ts", INT, True),
        ("kind", STR, True),
        ("message", STR, True),
        ("detail", MAP, False),
    ),
    "trailer": (
        ("ts", INT, True),
        ("end", INT, True),
        ("lost", LOST, False),
        ("reason", STR, False),
    ),
}

RECORD_TYPES = frozenset(FIELDS)


def check_record(record: Any) -> str | None:
    """Check one record against `FIELDS`; return what is wrong with it, or None."""
    if not isinstance(record, dict):
        return f"it is a {type(record).__name__}, not a map"

    record_type = record.get("type")
    if not isinstance(record_type, str) or record_type not in RECORD_TYPES:
        return f"it has no known 'type' (found {record_type!r})"

    for key, kind, required in FIELDS[record_type]:
        if key not in record:
            if required:
                return f"its {record_type} record has no '{key}'"
            continue
        if not kind.accepts(record[key]):
            return f"the '{key}' of its {record_type} record is not {kind.description}"

    return None


class StreamWriter:
    """Buffered writer of stream records; each flush writes whole records only.

    The first record must be a header and nothing may follow the trailer, so
    that the output is always a stream `read_stream` accepts. An invalid
    record is a bug of the caller and raises ValueError; failures of the
    output raise StreamError.
    """

    def __init__(self, name: str, write_bytes: Callable[[bytes], None], close: Callable[[], None]):
        self.name = name
        self._write_bytes = write_bytes
        self._close = close
        self._packer = msgpack.Packer(use_bin_type=True)
        self._buffer = bytearray()
        self._records = 0
        self._finished = False
        self._closed = False

    @classmethod
    def create(cls, path: str | os.PathLike, force: bool = False) -> StreamWriter:
        """Create a new output file with mode 0600 and return its writer.

        A symbolic link at `path` is always rejected, and so is anything
        other than a regular file. An existing regular file is rejected
        unless `force` is true; then it is unlinked before the new file is
        created with O_EXCL. Unlinking (instead of writing a temporary file
        and renaming it at close) keeps the data of a tracer that is killed
        under the name the operator gave, readable up to its last flush.
        """
        path = os.fspath(path)
        _remove_existing_output(path, force)

        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        try:
            fd = os.open(path, flags, 0o600)
        except FileExistsError:
            raise StreamError(
                f"output file {path} was created by another process while agent-tracer "
                "was opening it; check what else writes there and choose another path"
            ) from None
        except OSError as error:
            raise StreamError(f"cannot create output file {path}: {error.strerror}") from None

        # The umask can only remove bits from the mode given to open; this
        # makes the mode exactly 0600 whatever the umask is.
        os.fchmod(fd, 0o600)
        log.debug("created output file %s", path)

        def write_bytes(data: bytes) -> None:
            view = memoryview(data)
            while view:
                written = os.write(fd, view)
                view = view[written:]

        return cls(path, write_bytes, lambda: os.close(fd))

    @classmethod
    def to_file(cls, fileobj: BinaryIO) -> StreamWriter:
        """Return a writer to an open binary file; closing the writer leaves the file open."""

        def write_bytes(data: bytes) -> None:
            fileobj.write(data)
            fileobj.flush()

        return cls(getattr(fileobj, "name", "<stream>"), write_bytes, lambda: None)

    def write(self, record: dict) -> None:
        """Pack one record into the buffer, flushing when the buffer is full."""
        if self._closed:
            raise ValueError(f"stream writer for {self.name} is closed")

        problem = check_record(record)
        if problem is not None:
            raise ValueError(f"invalid record for {self.name}: {problem}")

        record_type = record["type"]
        if self._records == 0 and record_type != "header":
            raise ValueError(f"the first record of {self.name} must be a header, not {record_type}")
        if self._records > 0 and record_type == "header":
            raise ValueError(f"{self.name} already has a header")
        if record_type == "header" and record["schema"] != SCHEMA_VERSION:
            raise ValueError(f"this writer writes schema version {SCHEMA_VERSION}")
        if self._finished:
            raise ValueError(f"{self.name} already has a trailer; nothing may follow it")

        packed = self._packer.pack(record)
        if len(packed) > MAX_RECORD_BYTES:
            raise ValueError(
                f"a {record_type} record of {len(packed)} bytes is over the limit of "
                f"{MAX_RECORD_BYTES} bytes that readers accept"
            )

        self._buffer += packed
        self._records += 1
        self._finished = record_type == "trailer"

        if len(self._buffer) >= FLUSH_THRESHOLD:
            self.flush()

    def flush(self) -> None:
        """Write every buffered record to the output."""
        if not self._buffer:
            return

        data = bytes(self._buffer)
        self._buffer.clear()
        try:
            self._write_bytes(data)
        except OSError as error:
            raise StreamError(f"writing {self.name} failed: {error.strerror or error}") from None

    def close(self) -> None:
        """Flush and close the output; calling it again does nothing."""
        if self._closed:
            return

        try:
            self.flush()
        finally:
            self._closed = True
            self._close()

    def __enter__(self) -> StreamWriter:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def check_output_path(path: str, force: bool) -> bool:
    """Raise StreamError unless `path` may become a new output file; return whether it exists.

    A symbolic link or anything but a regular file is always rejected, and
    an existing regular file unless `force` is true.
    """
    try:
        status = os.lstat(path)
    except FileNotFoundError:
        return False
    except OSError as error:
        raise StreamError(f"cannot check output file {path}: {error.strerror}") from None

    if stat.S_ISLNK(status.st_mode):
        raise StreamError(
            f"output file {path} is a symbolic link; agent-tracer never writes through one, "
            "so remove the link or choose another path"
        )
    if not stat.S_ISREG(status.st_mode):
        raise StreamError(
            f"output path {path} exists and is not a regular file; choose another path"
        )
    if not force:
        raise StreamError(f"output file {path} exists; pass --force to replace it")
    return True


def _remove_existing_output(path: str, force: bool) -> None:
    if not check_output_path(path, force):
        return

    try:
        os.unlink(path)
    except OSError as error:
        raise StreamError(f"cannot replace output file {path}: {error.strerror}") from None
    log.info("removed existing output file %s (--force)", path)


class _CountingReader:
    """File wrapper that counts the bytes read and enforces MAX_RECORD_BYTES.

    Counting works on pipes too. A read request made when MAX_RECORD_BYTES
    bytes from `record_start` on have been read raises msgpack.BufferFull,
    because the record being decoded is then over the limit. msgpack's own
    max_buffer_size is not enough, because its C unpacker drops the decoded
    part of a record from the buffer and so limits single strings, not
    records. Before msgpack 1.0.4
    (https://github.com/msgpack/msgpack-python/pull/506), a full buffer also
    ended the C unpacker's iteration like the end of the file, and the
    pure-Python unpacker read on past the limit.
    """

    def __init__(self, fileobj: BinaryIO):
        self._fileobj = fileobj
        self.bytes_read = 0
        self.record_start = 0

    def read(self, size: int = -1) -> bytes:
        if self.bytes_read - self.record_start >= MAX_RECORD_BYTES:
            raise msgpack.BufferFull

        data = self._fileobj.read(size)
        self.bytes_read += len(data)
        return data


# Exceptions that msgpack raises on bad data: its own (OutOfData, BufferFull,
# FormatError, StackError), ValueError for a length over a limit or invalid
# UTF-8, and TypeError for a map key that cannot be hashed.
_DECODE_ERRORS = (msgpack.UnpackException, ValueError, TypeError)


class StreamReader:
    """Iterator over the records of one stream, read lazily.

    `header` is read when the stream is opened. Iteration yields the records
    that follow it, in order with the trailer (if any) last, and can be done
    once. After it, `trailer` is the trailer
    or None, and `truncated` is true when the file ended before a trailer
    (the tracer was stopped or the file was cut). `problem` gives the byte
    offset and the reason when reading stopped at bad data. `offset` is the
    byte offset just after the last whole record read.
    """

    def __init__(self, path: str, fileobj: BinaryIO):
        self.path = path
        self.header: dict = {}
        self.trailer: dict | None = None
        self.truncated = False
        self.problem: str | None = None
        self.offset = 0
        self.records_read = 0
        self._file = fileobj
        self._counter = _CountingReader(fileobj)
        self._unpacker = msgpack.Unpacker(
            self._counter,
            raw=False,
            strict_map_key=False,
            read_size=READ_SIZE,
            max_buffer_size=MAX_RECORD_BYTES,
            max_str_len=MAX_RECORD_BYTES,
            max_bin_len=MAX_RECORD_BYTES,
            max_array_len=MAX_ARRAY_LENGTH,
            max_map_len=MAX_MAP_LENGTH,
            max_ext_len=0,
        )
        self._iterated = False

    def _read_header(self) -> None:
        try:
            record = next(self._unpacker)
        except StopIteration:
            if self._counter.bytes_read == 0:
                raise StreamError(f"{self.path} is empty") from None
            raise StreamError(
                f"{self.path} is not an agent-tracer stream, or its header is incomplete: "
                f"the file ends inside its first record after {self._counter.bytes_read} bytes"
            ) from None
        except _DECODE_ERRORS as error:
            raise StreamError(
                f"{self.path} is not an agent-tracer stream: "
                f"its first record is not valid msgpack ({_describe(error)})"
            ) from None

        if not isinstance(record, dict) or record.get("type") != "header":
            raise StreamError(
                f"{self.path} is not an agent-tracer stream: its first record is not a header"
            )
        schema = record.get("schema")
        if not _is_int(schema):
            raise StreamError(
                f"{self.path} is not an agent-tracer stream: its header has no integer 'schema'"
            )
        if schema != SCHEMA_VERSION:
            raise StreamError(
                f"{self.path} has schema version {schema}; "
                f"this agent-tracer reads version {SCHEMA_VERSION}"
            )

        problem = check_record(record)
        if problem is not None:
            raise StreamError(f"{self.path} has an invalid header: {problem}")

        self.header = record
        self.offset = self._unpacker.tell()
        self.records_read = 1

    def __iter__(self) -> Iterator[dict]:
        if self._iterated:
            raise RuntimeError(f"the records of {self.path} can be iterated only once")
        self._iterated = True

        try:
            yield from self._read_body()
        finally:
            self.close()

    def _read_body(self) -> Iterator[dict]:
        while True:
            record_offset = self.offset
            self._counter.record_start = record_offset
            try:
                record = next(self._unpacker)
            except StopIteration:
                self._finish(record_offset)
                return
            except msgpack.BufferFull:
                self.problem = _oversized_record_problem(record_offset)
                return
            except _DECODE_ERRORS as error:
                self.problem = (
                    f"the record at byte {record_offset} is not valid msgpack ({_describe(error)})"
                )
                return

            # _CountingReader stops a larger record only when the unpacker
            # requests more data, but one read can bring in the rest of a
            # record that is only a little over the limit.
            if self._unpacker.tell() - record_offset > MAX_RECORD_BYTES:
                self.problem = _oversized_record_problem(record_offset)
                return

            self.problem = self._check_body_record(record, record_offset)
            if self.problem is not None:
                return

            self.offset = self._unpacker.tell()
            self.records_read += 1
            if record["type"] == "trailer":
                self.trailer = record
            yield record

    def _check_body_record(self, record: Any, record_offset: int) -> str | None:
        problem = check_record(record)
        if problem is not None:
            return f"the record at byte {record_offset} is invalid: {problem}"

        if self.trailer is not None:
            return f"the record at byte {record_offset} follows the trailer"
        if record["type"] == "header":
            return f"the record at byte {record_offset} is a second header"

        if record["type"] == "bucket" and self.header["compat_arch"] is None:
            if any(counters.get("syscalls_compat") for counters in record["roles"].values()):
                return (
                    f"the bucket at byte {record_offset} has compat syscall counts, "
                    "but the header names no compat_arch"
                )

        return None

    def _finish(self, end_offset: int) -> None:
        leftover = self._counter.bytes_read - end_offset
        if self.trailer is not None:
            if leftover:
                self.problem = (
                    f"{leftover} bytes after the trailer at byte {end_offset} "
                    "are not a whole record"
                )
            return

        self.truncated = True
        log.debug(
            "%s ends without a trailer after byte %d (%d bytes of an incomplete record)",
            self.path,
            end_offset,
            leftover,
        )

    def close(self) -> None:
        """Close the file; iteration then ends."""
        self._file.close()

    def __enter__(self) -> StreamReader:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _oversized_record_problem(record_offset: int) -> str:
    return (
        f"the record at byte {record_offset} is larger than "
        f"the limit of {MAX_RECORD_BYTES} bytes"
    )


def _describe(error: Exception) -> str:
    text = str(error)
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def read_stream(path: str | os.PathLike) -> StreamReader:
    """Open a stream and read its header; iterate the result for the records.

    Raises StreamError when the file cannot be read, is empty, is not an
    agent-tracer stream, or has another schema version.
    """
    path = os.fspath(path)
    try:
        fileobj = open(path, "rb")
    except IsADirectoryError:
        raise StreamError(f"{path} is a directory, not an agent-tracer stream") from None
    except OSError as error:
        raise StreamError(f"cannot read {path}: {error.strerror}") from None

    reader = StreamReader(path, fileobj)
    try:
        reader._read_header()
    except BaseException:
        fileobj.close()
        raise
    return reader
