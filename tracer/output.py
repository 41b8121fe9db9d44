"""The tracer's output: redaction, observers, one stream file or a rotated set, and a full disk."""

import logging
import os

from . import exit_codes
from .errors import StreamError, TracerError
from .stream import StreamWriter, check_output_path

log = logging.getLogger(__name__)


def part_path(path, number):
    """Return the file name of part `number` of a rotated stream: trace.msgpack -> trace.0001.msgpack."""
    stem, suffix = os.path.splitext(path)
    return f"{stem}.{number:04d}{suffix or '.msgpack'}"


def parse_size(text):
    """Parse a size such as 100M, 1G or 4096 into bytes."""
    units = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3}
    text = text.strip().upper().removesuffix("B")
    unit = text[-1:] if text[-1:] in "KMG" else ""
    number = text[: len(text) - len(unit)]
    try:
        value = int(float(number) * units[unit])
    except ValueError:
        raise ValueError(f"'{text}' is not a size: use a number of bytes with K, M or G, e.g. 100M") from None
    if value <= 0:
        raise ValueError(f"size '{text}' must be positive")
    return value


class StreamOutput:
    """Writes the stream to one file, or to numbered parts when rotation is on.

    Each part is a complete stream with its own header and trailer. Parts
    rotate only at bucket boundaries, so that no bucket is split. When the
    disk fills, writing stops, the count of records not written is kept,
    and the file stays readable up to its last whole record.
    """

    def __init__(self, path, force=False, rotate_size=None, rotate_seconds=None):
        self.path = path
        self.force = force
        self.rotate_size = rotate_size
        self.rotate_ns = int(rotate_seconds * 1e9) if rotate_seconds else None
        self.rotating = bool(rotate_size or rotate_seconds)
        self.part = 0
        self.writer = None
        self.part_started_ns = 0
        self.written_bytes = 0
        self.failure = None
        self.unwritten = 0
        self.paths = []

    def open(self, header, carried=()):
        """Create the next file and write its header and the carried records."""
        self.part += 1
        # A restarted tracer (a service) goes on after the parts already there.
        while self.rotating and os.path.lexists(part_path(self.path, self.part)):
            self.part += 1
        path = part_path(self.path, self.part) if self.rotating else self.path
        try:
            self.writer = StreamWriter.create(path, force=self.force)
        except StreamError as error:
            raise TracerError(str(error), exit_codes.CANT_CREATE) from None
        self.paths.append(path)
        self.part_started_ns = header["start"]
        self.written_bytes = 0
        header = dict(header, part=self.part) if self.rotating else header
        self.write(header)
        for record in carried:
            self.write(record)
        # A file on disk is never left without its header, even if the tracer is killed now.
        self.flush()

    def check_path(self):
        """Raise now, before the slow program load, if the output cannot be created."""
        path = part_path(self.path, 1) if self.rotating else self.path
        try:
            if not self.rotating:
                check_output_path(path, self.force)
            directory = os.path.dirname(os.path.abspath(path))
            if not os.path.isdir(directory):
                raise StreamError(f"cannot create output file {path}: directory {directory} does not exist")
            if not os.access(directory, os.W_OK):
                raise StreamError(f"cannot create output file {path}: directory {directory} is not writable")
        except StreamError as error:
            raise TracerError(str(error), exit_codes.CANT_CREATE) from None

    def write(self, record):
        """Write one record unless an earlier write failed; then count it as unwritten."""
        if self.failure is not None:
            self.unwritten += 1
            return
        try:
            self.writer.write(record)
        except StreamError as error:
            self._fail(error)
            self.unwritten += 1

    def flush(self):
        if self.failure is not None:
            return
        try:
            self.writer.flush()
            self.written_bytes = os.path.getsize(self.paths[-1])
        except (StreamError, OSError) as error:
            self._fail(error)

    def _fail(self, error):
        self.failure = error
        log.error("%s; tracing goes on, counting what is not written", error)

    def should_rotate(self, now_ns):
        """Tell whether the current part is due to end (checked at bucket boundaries)."""
        if not self.rotating or self.failure is not None:
            return False
        if self.rotate_size and self.written_bytes >= self.rotate_size:
            return True
        return bool(self.rotate_ns and now_ns - self.part_started_ns >= self.rotate_ns)

    def rotate(self, trailer, header, carried):
        """End the current part with trailer and start the next one."""
        self.write(trailer)
        self.close()
        self.open(header, carried)
        log.info("rotated the stream to %s", self.paths[-1])

    def close(self):
        if self.writer is None:
            return
        try:
            self.writer.close()
        except StreamError as error:
            if self.failure is None:
                self._fail(error)
        self.writer = None

    def raise_failure(self):
        """Raise the write failure, if any, as an error with the I/O exit code."""
        if self.failure is not None:
            raise TracerError(
                f"{self.failure}; {self.unwritten} records were not written. {self.paths[-1]} is "
                "readable up to the failure (agent-tracer report reads it); free space and trace again",
                exit_codes.IO_ERROR,
            )


class RecordSink:
    """Redacts records, writes them to the output and shows them to the observers."""

    def __init__(self, output, observers, redactor):
        self.output = output
        self.observers = observers
        self.redactor = redactor

    def write(self, record):
        if "argv" in record:
            record["argv"] = self.redactor.argv(record["argv"])
        if "cmdline" in record:
            record["cmdline"] = self.redactor.cmdline(record["cmdline"])
        self.output.write(record)
        for observer in self.observers:
            observer(record)

    def show(self, record):
        """Show a record that the output wrote itself (a header) to the observers."""
        for observer in self.observers:
            observer(record)

    def flush(self):
        self.output.flush()
