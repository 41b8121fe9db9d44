"""Unit tests of the msgpack stream writer and reader (no root needed)."""

from __future__ import annotations

import io
import os
import signal
import stat
import tempfile

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tracer import stream
from tracer.errors import StreamError, TracerError
from tracer.stream import StreamWriter, read_stream

START = 1_000_000_000_000


def header(**changes) -> dict:
    record = {
        "type": "header",
        "schema": 1,
        "tool": "agent-tracer",
        "version": "0.1.0",
        "host": "web-1",
        "kernel": "6.18.0",
        "arch": "x86_64",
        "compat_arch": "i386",
        "clock": {"monotonic_ns": START, "realtime_ns": 1_700_000_000_000_000_000},
        "start": START,
        "interval": 1.0,
        "preset": "opsworks",
        "roles": [{"name": "keep_alive", "rule": "keep_alive of master"}],
        "syscalls": True,
        "failed_execs": True,
        "options": {},
    }
    record.update(changes)
    return record


def sample_records() -> list[dict]:
    return [
        header(),
        {
            "type": "root",
            "ts": START,
            "pid": 100,
            "role": "keep_alive",
            "cmdline": "opsworks-agent: keep_alive of master 99",
            "reason": "seed",
        },
        {
            "type": "fork",
            "ts": START + 10,
            "pid": 101,
            "ppid": 100,
            "tid": 100,
            "role": "keep_alive",
        },
        {
            "type": "exec",
            "ts": START + 20,
            "pid": 101,
            "old_tid": 101,
            "filename": "/usr/bin/true",
            "argv": ["true"],
            "comm": "true",
            "role": "keep_alive",
        },
        {"type": "exit", "ts": START + 30, "pid": 101, "role": "keep_alive"},
        {
            "type": "bucket",
            "start": START,
            "end": START + 1_000_000_000,
            "roles": {
                "keep_alive": {
                    "syscalls": {39: 3, 435: 1},
                    "syscalls_compat": {20: 2},
                    "cpu_ns": 5000,
                }
            },
            "lost": {"events": 0},
        },
        {
            "type": "trailer",
            "ts": START + 1_000_000_000,
            "end": START + 1_000_000_000,
            "lost": {"events": 0},
            "reason": "duration",
        },
    ]


def pack(records: list) -> bytes:
    return b"".join(msgpack.packb(record, use_bin_type=True) for record in records)


def write_bytes(path, data: bytes) -> str:
    with open(path, "wb") as output:
        output.write(data)
    return str(path)


def read_all(path) -> tuple[stream.StreamReader, list[dict]]:
    """Return the reader and its header followed by the records it iterates."""
    reader = read_stream(path)
    return reader, [reader.header, *reader]


def test_round_trip(tmp_path):
    path = tmp_path / "trace.msgpack"
    records = sample_records()

    with StreamWriter.create(path) as writer:
        for record in records:
            writer.write(record)

    reader = read_stream(path)
    assert reader.header == records[0]
    assert list(reader) == records[1:]
    assert reader.trailer == records[-1]
    assert reader.truncated is False
    assert reader.problem is None
    assert reader.offset == path.stat().st_size
    assert reader.records_read == len(records)


def test_round_trip_to_file_object():
    buffer = io.BytesIO()
    writer = StreamWriter.to_file(buffer)
    for record in sample_records():
        writer.write(record)
    writer.close()

    assert buffer.closed is False
    assert buffer.getvalue() == pack(sample_records())


def test_truncation_at_every_byte_keeps_whole_records(tmp_path):
    records = sample_records()
    data = pack(records)
    ends = []
    offset = 0
    for record in records:
        offset += len(msgpack.packb(record, use_bin_type=True))
        ends.append(offset)
    path = tmp_path / "cut.msgpack"

    for cut in range(len(data)):
        write_bytes(path, data[:cut])

        if cut == 0:
            with pytest.raises(StreamError, match="is empty"):
                read_stream(path)
            continue
        if cut < ends[0]:
            with pytest.raises(StreamError, match="ends inside its first record"):
                read_stream(path)
            continue

        reader, read_back = read_all(path)
        whole = [record for record, end in zip(records, ends) if end <= cut]
        assert read_back == whole, f"cut at byte {cut}"
        assert reader.truncated is True, f"cut at byte {cut}"
        assert reader.problem is None, f"cut at byte {cut}"
        assert reader.trailer is None, f"cut at byte {cut}"
        assert reader.offset == max(end for end in ends if end <= cut)


def test_empty_file(tmp_path):
    path = write_bytes(tmp_path / "empty.msgpack", b"")

    with pytest.raises(StreamError) as caught:
        read_stream(path)

    assert str(caught.value) == f"{path} is empty"


def test_other_schema_version(tmp_path):
    path = write_bytes(tmp_path / "v2.msgpack", pack([header(schema=2)]))

    with pytest.raises(StreamError) as caught:
        read_stream(path)

    assert str(caught.value) == f"{path} has schema version 2; this agent-tracer reads version 1"


@pytest.mark.parametrize(
    "data, detail",
    [
        (b"hello, world\n", "its first record is not a header"),
        (b"\xc1\x00", "its first record is not valid msgpack (FormatError)"),
        (msgpack.packb([1, 2, 3]), "its first record is not a header"),
        (msgpack.packb({"type": "fork"}), "its first record is not a header"),
        (msgpack.packb({"type": "header"}), "its header has no integer 'schema'"),
        (msgpack.packb({"type": "header", "schema": "1"}), "its header has no integer 'schema'"),
    ],
)
def test_not_a_stream(tmp_path, data, detail):
    path = write_bytes(tmp_path / "other.bin", data)

    with pytest.raises(StreamError) as caught:
        read_stream(path)

    assert str(caught.value) == f"{path} is not an agent-tracer stream: {detail}"


def test_header_missing_required_key(tmp_path):
    record = header()
    del record["host"]
    path = write_bytes(tmp_path / "nohost.msgpack", pack([record]))

    with pytest.raises(StreamError) as caught:
        read_stream(path)

    assert str(caught.value) == f"{path} has an invalid header: its header record has no 'host'"


def test_missing_and_directory_inputs(tmp_path):
    missing = tmp_path / "missing.msgpack"

    with pytest.raises(StreamError) as caught:
        read_stream(missing)
    assert str(caught.value) == f"cannot read {missing}: No such file or directory"

    with pytest.raises(StreamError) as caught:
        read_stream(tmp_path)
    assert str(caught.value) == f"{tmp_path} is a directory, not an agent-tracer stream"


def test_stream_error_is_tracer_error():
    error = StreamError("x")

    assert isinstance(error, TracerError)
    assert error.exit_code == 1
    assert StreamError("x", exit_code=3).exit_code == 3


@pytest.mark.parametrize(
    "bad, problem",
    [
        (b"\x05", "is invalid: it is a int, not a map"),
        (msgpack.packb({"type": "bogus"}), "is invalid: it has no known 'type' (found 'bogus')"),
        (msgpack.packb({"ts": 1}), "is invalid: it has no known 'type' (found None)"),
        (msgpack.packb({"type": []}), "is invalid: it has no known 'type' (found [])"),
        (
            msgpack.packb({"type": "fork", "ts": 1, "pid": "7", "ppid": 1, "tid": 1, "role": "r"}),
            "is invalid: the 'pid' of its fork record is not an integer",
        ),
        (
            msgpack.packb({"type": "exit", "ts": 1, "pid": 7}),
            "is invalid: its exit record has no 'role'",
        ),
        (
            msgpack.packb({"type": "bucket", "start": 1, "end": 2, "roles": {"r": {"cpu_ns": -1}}}),
            "is invalid: the 'roles' of its bucket record is not "
            "a map of role name to {syscalls, syscalls_compat, cpu_ns}",
        ),
        (msgpack.packb(header()), "is a second header"),
        (b"\xc1", "is not valid msgpack (FormatError"),
    ],
)
def test_bad_record_stops_with_problem(tmp_path, bad, problem):
    records = sample_records()[:3]
    good = pack(records)
    path = write_bytes(tmp_path / "bad.msgpack", good + bad + pack(sample_records()[3:]))

    reader, read_back = read_all(path)

    assert read_back == records
    assert reader.problem.startswith(f"the record at byte {len(good)} {problem}")
    assert reader.truncated is False
    assert reader.trailer is None
    assert reader.offset == len(good)


def test_record_after_trailer(tmp_path):
    records = sample_records()
    path = write_bytes(tmp_path / "after.msgpack", pack(records + [records[2]]))

    reader, read_back = read_all(path)

    assert read_back == records
    assert reader.problem == f"the record at byte {len(pack(records))} follows the trailer"
    assert reader.truncated is False


def test_partial_record_after_trailer(tmp_path):
    records = sample_records()
    path = write_bytes(tmp_path / "after.msgpack", pack(records) + b"\x82\xa4type")

    reader, read_back = read_all(path)

    assert read_back == records
    assert reader.problem == (
        f"6 bytes after the trailer at byte {len(pack(records))} are not a whole record"
    )
    assert reader.truncated is False


def test_compat_counts_need_compat_arch(tmp_path):
    records = sample_records()
    records[0] = header(arch="aarch64", compat_arch=None)
    path = write_bytes(tmp_path / "arm.msgpack", pack(records))
    bucket_offset = len(pack(records[:5]))

    reader, read_back = read_all(path)

    assert read_back == records[:5]
    assert reader.problem == (
        f"the bucket at byte {bucket_offset} has compat syscall counts, "
        "but the header names no compat_arch"
    )


def test_oversized_record(tmp_path):
    huge = {"type": "marker", "ts": 1, "name": "x" * (stream.MAX_RECORD_BYTES + 1)}
    path = write_bytes(tmp_path / "huge.msgpack", pack([header(), huge]))

    reader, read_back = read_all(path)

    assert read_back == [header()]
    assert reader.problem == (
        f"the record at byte {len(pack([header()]))} is larger than "
        f"the limit of {stream.MAX_RECORD_BYTES} bytes"
    )


def marker_of_size(size: int, strings: int) -> dict:
    """Return a marker that packs to exactly `size` bytes, most of them in `strings` strings."""
    part = "p" * ((size - 8 * strings - 1000) // strings)
    record = {"type": "marker", "ts": 1, "name": "", "detail": {"parts": [part] * strings}}
    unnamed_size = len(msgpack.packb(record, use_bin_type=True))

    # A longer name also has a longer msgpack header than the empty one.
    for header_growth in (0, 1, 2, 4):
        record["name"] = "x" * (size - unnamed_size - header_growth)
        if len(msgpack.packb(record, use_bin_type=True)) == size:
            return record
    raise AssertionError(f"no marker packs to exactly {size} bytes")


@pytest.mark.parametrize("strings", [1, 1024])
def test_record_at_limit_is_read(tmp_path, strings):
    records = sample_records()
    records.insert(-1, marker_of_size(stream.MAX_RECORD_BYTES, strings))
    path = write_bytes(tmp_path / "limit.msgpack", pack(records))

    reader, read_back = read_all(path)

    assert read_back == records
    assert reader.problem is None
    assert reader.truncated is False


# Both records are made of 1024 strings of a few KiB each, far below the
# limit. The first ends less than one read past the limit, so the reader
# rejects it after decoding it. The second is still incomplete when the
# limit is reached, so the reader rejects it before reading on.
@pytest.mark.parametrize("size", [stream.MAX_RECORD_BYTES + 1, 2 * stream.MAX_RECORD_BYTES])
def test_oversized_record_of_short_strings(tmp_path, size):
    records = sample_records()
    records.insert(-1, marker_of_size(size, 1024))
    path = write_bytes(tmp_path / "huge.msgpack", pack(records))

    reader, read_back = read_all(path)

    assert read_back == records[:-2]
    assert reader.problem == (
        f"the record at byte {len(pack(records[:-2]))} is larger than "
        f"the limit of {stream.MAX_RECORD_BYTES} bytes"
    )
    assert reader.trailer is None


def test_iterates_once(tmp_path):
    path = write_bytes(tmp_path / "once.msgpack", pack(sample_records()))
    reader = read_stream(path)
    list(reader)

    with pytest.raises(RuntimeError, match="only once"):
        list(reader)


def test_symlink_at_output_rejected(tmp_path):
    target = tmp_path / "target"
    target.write_bytes(b"keep")
    link = tmp_path / "link.msgpack"
    link.symlink_to(target)
    dangling = tmp_path / "dangling.msgpack"
    dangling.symlink_to(tmp_path / "nowhere")

    for path in (link, dangling):
        for force in (False, True):
            with pytest.raises(StreamError) as caught:
                StreamWriter.create(path, force=force)
            assert str(caught.value) == (
                f"output file {path} is a symbolic link; agent-tracer never writes through one, "
                "so remove the link or choose another path"
            )
            assert path.is_symlink()

    assert target.read_bytes() == b"keep"
    assert not (tmp_path / "nowhere").exists()


def test_existing_file_needs_force(tmp_path):
    path = tmp_path / "trace.msgpack"
    path.write_bytes(b"old data")

    with pytest.raises(StreamError) as caught:
        StreamWriter.create(path)
    assert str(caught.value) == f"output file {path} exists; pass --force to replace it"
    assert path.read_bytes() == b"old data"

    with StreamWriter.create(path, force=True) as writer:
        writer.write(header())
    assert path.read_bytes() == pack([header()])


def test_output_not_regular_or_unreachable(tmp_path):
    with pytest.raises(StreamError) as caught:
        StreamWriter.create(tmp_path, force=True)
    assert str(caught.value) == (
        f"output path {tmp_path} exists and is not a regular file; choose another path"
    )

    missing_dir = tmp_path / "no" / "trace.msgpack"
    with pytest.raises(StreamError) as caught:
        StreamWriter.create(missing_dir)
    assert str(caught.value) == (
        f"cannot create output file {missing_dir}: No such file or directory"
    )


@pytest.mark.parametrize("umask", [0o000, 0o022, 0o277])
def test_output_mode_0600(tmp_path, umask):
    path = tmp_path / "trace.msgpack"
    old_umask = os.umask(umask)
    try:
        writer = StreamWriter.create(path)
    finally:
        os.umask(old_umask)
    writer.close()

    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_flush_leaves_whole_records(tmp_path):
    path = tmp_path / "live.msgpack"
    records = sample_records()

    writer = StreamWriter.create(path)
    for count, record in enumerate(records[:-1], start=1):
        writer.write(record)
        writer.flush()
        assert path.read_bytes() == pack(records[:count])

        reader, read_back = read_all(path)
        assert read_back == records[:count]
        assert reader.truncated is True
    writer.close()


def test_automatic_flush_writes_whole_records(tmp_path):
    path = tmp_path / "big.msgpack"
    fork = sample_records()[2]
    written = [header()]

    writer = StreamWriter.create(path)
    writer.write(header())
    while path.stat().st_size == 0:
        writer.write(fork)
        written.append(fork)

    on_disk = path.read_bytes()
    assert on_disk == pack(written)
    assert len(on_disk) >= stream.FLUSH_THRESHOLD
    writer.close()


@pytest.mark.parametrize(
    "records, message",
    [
        ([sample_records()[2]], "must be a header"),
        ([header(), header()], "already has a header"),
        ([header(schema=2)], "writes schema version 1"),
        ([header(), {"type": "exit", "ts": 1, "pid": 2}], "has no 'role'"),
        ([header(), [1, 2]], "not a map"),
        ([header(), sample_records()[-1], sample_records()[2]], "already has a trailer"),
    ],
)
def test_writer_rejects_invalid_sequences(records, message):
    writer = StreamWriter.to_file(io.BytesIO())

    with pytest.raises(ValueError, match=message):
        for record in records:
            writer.write(record)


def test_writer_rejects_oversized_record():
    writer = StreamWriter.to_file(io.BytesIO())
    writer.write(header())
    huge = {"type": "marker", "ts": 1, "name": "x" * stream.MAX_RECORD_BYTES}

    with pytest.raises(ValueError, match="over the limit of 4194304 bytes"):
        writer.write(huge)


def test_write_after_close():
    writer = StreamWriter.to_file(io.BytesIO())
    writer.close()

    with pytest.raises(ValueError, match="is closed"):
        writer.write(header())


def test_write_failure_is_stream_error():
    class FullDisk(io.RawIOBase):
        name = "/full/trace.msgpack"

        def writable(self):
            return True

        def write(self, data):
            raise OSError(28, "No space left on device")

    writer = StreamWriter.to_file(FullDisk())
    writer.write(header())

    with pytest.raises(StreamError) as caught:
        writer.flush()
    assert str(caught.value) == "writing /full/trace.msgpack failed: No space left on device"


VALID = pack(sample_records())


def _alarm(signum, frame):
    raise AssertionError("reading the stream did not finish")


edits = st.one_of(
    st.tuples(st.just("append"), st.integers(0, 0), st.binary(min_size=1, max_size=64)),
    st.tuples(
        st.just("replace"), st.integers(0, len(VALID) - 1), st.binary(min_size=1, max_size=16)
    ),
    st.tuples(st.just("insert"), st.integers(0, len(VALID)), st.binary(min_size=1, max_size=16)),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(edits, min_size=1, max_size=4))
def test_damaged_stream_raises_only_stream_error(edit_list):
    data = VALID
    for action, position, chunk in edit_list:
        if action == "append":
            data = data + chunk
        elif action == "replace":
            data = data[:position] + chunk + data[position + len(chunk) :]
        else:
            data = data[:position] + chunk + data[position:]

    # A watchdog against a hang, far above the milliseconds a read takes;
    # it is not a measure of speed.
    previous = signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(60)
    try:
        with tempfile.NamedTemporaryFile(suffix=".msgpack") as damaged:
            damaged.write(data)
            damaged.flush()
            try:
                reader = read_stream(damaged.name)
            except StreamError:
                return
            records = list(reader)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)

    assert reader.header["type"] == "header"
    assert all(stream.check_record(record) is None for record in records)
    assert all(record["type"] != "header" for record in records)
    assert reader.offset <= len(data)
    if reader.problem is None and not reader.truncated:
        assert reader.trailer is records[-1]
    if reader.truncated:
        assert reader.trailer is None


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=512))
def test_random_bytes_raise_only_stream_error(data):
    with tempfile.NamedTemporaryFile(suffix=".msgpack") as random_file:
        random_file.write(data)
        random_file.flush()
        try:
            reader = read_stream(random_file.name)
        except StreamError:
            return
        records = list(reader)

    assert reader.header["type"] == "header"
    assert all(stream.check_record(record) is None for record in records)
