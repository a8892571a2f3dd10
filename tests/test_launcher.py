"""The DirectRunner launcher: its workers' log levels and the launcher's heap."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import apache_beam as beam
import pytest
from apache_beam.coders import coders
from apache_beam.coders.coder_impl import create_InputStream
from apache_beam.options.pipeline_options import PipelineOptions, WorkerOptions
from apache_beam.portability.api import beam_fn_api_pb2
from apache_beam.runners import common
from apache_beam.runners.portability.fn_api_runner import execution
from apache_beam.runners.worker import bundle_processor, data_plane, statesampler
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to
from apache_beam.transforms import core, window
from apache_beam.transforms.window import GlobalWindow
from apache_beam.utils.counters import CounterFactory
from apache_beam.utils.windowed_value import WindowedValue

from pipeline.graph import WORKER_LOG_LEVEL, WORKER_LOG_LEVELS, quiet_workers
from pipeline.memory import PIECE, release_sent_outputs, send_in_pieces

REPO = Path(__file__).resolve().parents[1]

# Whether glibc maps a block of 2 or 3 MiB: a 4 MiB block freed first raises glibc's own
# threshold above them, so outside launching_workers it does not (the heap grows instead).
MAPPED_BLOCKS = """
import ctypes, json, os
from pipeline.memory import launching_workers

class Mallinfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
        "fordblks", "keepcost")]

libc = ctypes.CDLL(None)
libc.mallinfo2.restype = Mallinfo2
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]

def mapped(size):
    others = libc.mallinfo2().hblks
    block = libc.malloc(size)
    held = libc.mallinfo2().hblks
    libc.free(block)
    return held > others

libc.free(libc.malloc(4 << 20))
before = mapped(2 << 20)
with launching_workers():
    during, arenas = mapped(3 << 20), os.environ.get("MALLOC_ARENA_MAX")
print(json.dumps([before, during, mapped(3 << 20), arenas, os.environ.get("MALLOC_ARENA_MAX")]))
"""


def test_quiet_workers__sets_levels_the_user_left_unset() -> None:
    opts = PipelineOptions([])
    quiet_workers(opts)
    worker = opts.view_as(WorkerOptions)
    assert worker.default_sdk_harness_log_level == WORKER_LOG_LEVEL
    assert worker.sdk_harness_log_level_overrides == WORKER_LOG_LEVELS


def test_quiet_workers__levels_the_user_set_win() -> None:
    chosen = {"apache_beam.options.pipeline_options": "INFO"}
    opts = PipelineOptions(
        [
            "--default_sdk_harness_log_level=DEBUG",
            f"--sdk_harness_log_level_overrides={json.dumps(chosen)}",
        ]
    )
    quiet_workers(opts)
    worker = opts.view_as(WorkerOptions)
    assert worker.default_sdk_harness_log_level == "DEBUG"
    assert worker.sdk_harness_log_level_overrides == chosen


def test_launching_workers__maps_large_blocks_and_sets_worker_arenas_only_meanwhile() -> None:
    probe = subprocess.run(
        [sys.executable, "-c", MAPPED_BLOCKS],
        cwd=REPO,
        env={"PYTHONPATH": str(REPO), "PATH": ""},
        capture_output=True,
        text=True,
    )
    if "mallinfo2" in probe.stderr:
        pytest.skip("malloc is not glibc's (2.33 or later): nothing to check")
    assert probe.returncode == 0, probe.stderr
    assert json.loads(probe.stdout) == [False, True, False, "2", None]


def _output_operation() -> bundle_processor.DataOutputOperation:
    counters = CounterFactory()
    return bundle_processor.DataOutputOperation(
        common.NameContext("Out"),
        "Out",
        {},
        counters,
        statesampler.StateSampler("test", counters),
        coders.WindowedValueCoder(coders.BytesCoder()),
        "Out",
        None,
    )


def test_release_sent_outputs__a_finished_bundle_sends_its_output_and_keeps_no_stream() -> None:
    release_sent_outputs()
    release_sent_outputs()  # idempotent: the stream is still closed once
    operation, sent = _output_operation(), []
    operation.set_output_stream(data_plane.ClosableOutputStream(close_callback=sent.append))
    operation.process(WindowedValue(b"photo", 0, [GlobalWindow()]))
    operation.finish()
    assert len(sent) == 1 and sent[0].endswith(b"photo")
    assert operation.output_stream is None


def test_release_sent_outputs__stages_of_many_bundles_give_every_element() -> None:
    release_sent_outputs()
    with TestPipeline() as p:
        grouped = (
            p
            | beam.Create(range(1000))
            | beam.Map(lambda n: (n % 7, n))
            | beam.GroupByKey()
            | beam.MapTuple(lambda key, ns: (key, sum(ns)))
        )
        expected = [(k, sum(n for n in range(1000) if n % 7 == k)) for k in range(7)]
        assert_that(grouped, equal_to(expected))


KEYED = coders.WindowedValueCoder(
    coders.TupleCoder([coders.StrUtf8Coder(), coders.BytesCoder()]), coders.GlobalWindowCoder()
)
GROUPED = coders.WindowedValueCoder(
    coders.TupleCoder([coders.StrUtf8Coder(), coders.IterableCoder(coders.BytesCoder())]),
    coders.GlobalWindowCoder(),
)


def _decoded(parts: list[list[bytes]]) -> list[list[tuple]]:
    """Each part's (key, values), piece after piece."""
    impl = GROUPED.get_impl()
    decoded = []
    for part in parts:
        values = []
        for piece in part:
            stream = create_InputStream(piece)
            while stream.size() > 0:
                key, grouped = impl.decode_from_stream(stream, True).value
                values.append((key, list(grouped)))
        decoded.append(values)
    return decoded


def test_send_in_pieces__a_grouping_goes_out_in_pieces_with_its_keys_in_order() -> None:
    send_in_pieces()
    send_in_pieces()  # idempotent
    buffer = execution.GroupingBuffer(KEYED, GROUPED, core.Windowing(window.GlobalWindows()))
    keys = [f"k{n:03d}" for n in range(300)]
    for key in keys:  # ~1.2 MB in all: several pieces in each of 2 parts
        value = WindowedValue((key, key.encode() * 1000), 0, [GlobalWindow()])
        buffer.append(KEYED.get_impl().encode_nested(value))
    parts = buffer.partition(2)
    assert all(len(part) > 1 for part in parts)
    assert all(len(piece) < 2 * PIECE for part in parts for piece in part)
    assert _decoded(parts) == [
        [(key, [key.encode() * 1000]) for key in keys[i::2]] for i in range(2)
    ]
    assert buffer.partition(2) is parts  # partitioned once, as Beam's


def test_send_in_pieces__pieces_flush_at_piece_size() -> None:
    send_in_pieces()
    flushed: list[bytes] = []
    closed: list[bytes] = []
    stream = data_plane.ClosableOutputStream.create(closed.append, flushed.append, 0)
    for _ in range(10):
        stream.write(b"x" * (PIECE // 4))
        stream.maybe_flush()
    stream.close()
    assert [len(piece) for piece in flushed] == [5 * PIECE // 4, 5 * PIECE // 4]
    assert len(b"".join(flushed + closed)) == 10 * (PIECE // 4)


def test_send_in_pieces__groupings_larger_than_pieces_give_every_element() -> None:
    send_in_pieces()
    with TestPipeline() as p:
        grouped = (
            p
            | beam.Create(range(3000))
            | beam.Map(lambda n: (n % 11, bytes(300)))
            | beam.GroupByKey()
            | beam.MapTuple(lambda key, values: (key, len(list(values))))
        )
        assert_that(grouped, equal_to([(k, len(range(k, 3000, 11))) for k in range(11)]))


ARROW_POOL = "import pipeline, pyarrow; print(pyarrow.default_memory_pool().backend_name)"


@pytest.mark.parametrize(("chosen", "expected"), [(None, "system"), ("mimalloc", "mimalloc")])
def test_pipeline_package__arrow_allocates_from_malloc_unless_told_otherwise(
    chosen: str | None, expected: str
) -> None:
    env = {"PYTHONPATH": str(REPO), "PATH": ""}
    if chosen:
        env["ARROW_DEFAULT_MEMORY_POOL"] = chosen
    probe = subprocess.run(
        [sys.executable, "-c", ARROW_POOL], cwd=REPO, env=env, capture_output=True, text=True
    )
    assert probe.returncode == 0, probe.stderr
    assert probe.stdout.strip() == expected


def test_send_in_pieces__an_in_process_channel_lets_each_message_go_once_read() -> None:
    send_in_pieces()
    channel = data_plane.InMemoryDataChannel()
    for instruction, data in (("a", b"1"), ("b", b"2"), ("a", b"3")):
        channel._inputs.append(
            beam_fn_api_pb2.Elements.Data(instruction_id=instruction, transform_id="t", data=data)
        )
    read = []
    for element in channel.input_elements("a", ["t"]):
        read.append(element.data)
        assert all(held is not element for held in channel._inputs)  # read: let go
    assert read == [b"1", b"3"]
    assert [element.data for element in channel._inputs] == [b"2"]  # another bundle's, kept
