"""Memory of a DirectRunner launcher of worker processes and of those workers.

glibc's malloc serves a block of 128 KiB or more from a mapping of its own, unmapped when
the block is freed; but once such a block is freed it raises that threshold to the block's
size (up to 32 MiB), so later blocks of that size come from the heap, which keeps what is
freed in it. The launcher allocates mostly such blocks: the whole collections it holds
between stages and the gRPC messages that carry them, a stage's worth each, so its RSS
ratchets up with the photos. Fixing the threshold in it is free: it analyses no photo. In
a worker, which does, every image array would then be mapped and zeroed afresh: +15 % CPU
per 12 MP photo (5x the page faults), so the workers keep glibc's threshold and are only
held to two arenas (the heaps glibc gives threads that allocate at once; each keeps what
is freed in it). README, Performance, has the figures at 1,000 and 10,000 photos.

Beam's SDK worker (each worker process, and an in-process run's own) keeps the processor
of each fused stage for its next bundle, and with it the stream that carried the stage's
last output: a buffer of up to twice the collection's encoded size (one bundle is half a
collection), for every stage, for the rest of the run. `release_sent_outputs` lets it go.

The launcher holds every collection between stages, encoded, and Beam moves a stage's input
and output between it and the workers as one message a bundle (up to 10 MiB): on its way
each was copied three or four times at once (a stream, a Data message, the Elements
message gathering them, gRPC's serialisation), so the launcher's peak was several times
the largest collection. `send_in_pieces` has them cross in pieces of PIECE bytes instead,
and has the launcher give back after each stage the pages freed in its heap.

pyarrow allocates from the C library's malloc here, not its default mimalloc, which kept
what the timing half's Arrow tables freed: set in pipeline/__init__.py, before pyarrow's
import.
"""

from __future__ import annotations

import ctypes
import os
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager

from apache_beam.coders.coder_impl import create_OutputStream
from apache_beam.portability.api import beam_fn_api_pb2
from apache_beam.runners.portability.fn_api_runner import execution, fn_runner
from apache_beam.runners.worker import bundle_processor, data_plane
from apache_beam.transforms import trigger
from apache_beam.transforms.window import GlobalWindow, GlobalWindows
from apache_beam.utils import windowed_value

# mallopt's parameter numbers, from glibc's malloc.h. glibc raises the trim threshold (free
# memory at the heap's top kept, not given back) to twice the mmap threshold with it.
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD, M_ARENA_MAX = -1, -3, -8
MAPPED_FROM = 128 * 1024  # glibc's starting mmap threshold (and trim threshold), kept fixed
HEAP_BELOW = 32 * 1024 * 1024  # the most glibc raises it to: where a busy process ends up
WORKER_ARENAS = {"MALLOC_ARENA_MAX": "2"}  # read by glibc when a process starts
# What a message between the launcher and a worker carries at most, about: large enough to
# be a mapped block in the launcher (given back once sent), small beside a collection.
PIECE = 2 * MAPPED_FROM


def _libc_function(name: str) -> Callable[..., int] | None:
    """glibc's function `name`, or None where the C library has none (macOS)."""
    try:
        return getattr(ctypes.CDLL(None), name)
    except (OSError, AttributeError):
        return None


def _mallopt(*settings: tuple[int, int]) -> bool:
    """Sets glibc's malloc parameters in this process; False where malloc is not glibc's."""
    mallopt = _libc_function("mallopt")
    return mallopt is not None and all([mallopt(parameter, value) for parameter, value in settings])


def hold_worker_arenas() -> None:
    """Holds this process, and those it forks (pipeline/workers.py), to WORKER_ARENAS
    unless this process was started with a setting of its own: glibc reads the variable
    only when a process starts, and a forked worker starts as a copy."""
    if "MALLOC_ARENA_MAX" not in os.environ:
        _mallopt((M_ARENA_MAX, int(WORKER_ARENAS["MALLOC_ARENA_MAX"])))


def _set_thresholds(mmap_from: int, trim_from: int) -> bool:
    """Fixes glibc's mmap and trim thresholds in this process; False where malloc is not
    glibc's."""
    return _mallopt((M_MMAP_THRESHOLD, mmap_from), (M_TRIM_THRESHOLD, trim_from))


@contextmanager
def launching_workers() -> Iterator[None]:
    """Meanwhile, this process maps every block of MAPPED_FROM bytes or more that its
    heap's free top cannot hold (unmapped when freed) and gives back that top beyond
    MAPPED_FROM; the processes it starts use WORKER_ARENAS unless told otherwise.

    After it, blocks below HEAP_BELOW come from the heap again, as in a process that has
    freed a block that large (the pipeline's tests run in one process with the analysis).
    """
    mapped = _set_thresholds(MAPPED_FROM, MAPPED_FROM)
    added = {name: value for name, value in WORKER_ARENAS.items() if name not in os.environ}
    os.environ.update(added)
    try:
        yield
    finally:
        for name in added:
            os.environ.pop(name, None)
        if mapped:
            _set_thresholds(HEAP_BELOW, 2 * HEAP_BELOW)


def release_sent_outputs() -> None:
    """Has Beam's SDK worker, in this process and those it forks, drop each output stream
    of a bundle once the bundle's output is sent (`DataOutputOperation.finish`): the next
    bundle of the stage gets a stream of its own (`set_output_stream`), so nothing reads
    the old one again. Idempotent."""
    operation = bundle_processor.DataOutputOperation
    if getattr(operation.finish, "releases_output", False):
        return
    finish = operation.finish

    def finish_and_release(self: bundle_processor.DataOutputOperation) -> None:
        finish(self)
        self.output_stream = None

    finish_and_release.releases_output = True
    operation.finish = finish_and_release


def _piecewise_stream(
    close_callback: Callable[[bytes], None] | None,
    flush_callback: Callable[[bytes], None] | None,
    data_buffer_time_limit_ms: int,
) -> data_plane.ClosableOutputStream:
    """Beam's `ClosableOutputStream.create`, flushing at PIECE bytes rather than 10 MiB."""
    if data_buffer_time_limit_ms > 0:
        return data_plane.TimeBasedBufferingClosableOutputStream(
            close_callback, flush_callback, PIECE, data_buffer_time_limit_ms
        )
    return data_plane.SizeBasedBufferingClosableOutputStream(close_callback, flush_callback, PIECE)


def _send_input_in_pieces(
    self: fn_runner.BundleManager,
    process_bundle_id: str,
    read_transform_id: str,
    byte_streams: Iterable[bytes] | None,
) -> None:
    """Beam's `BundleManager._send_input_to_worker`, flushed after each stream of elements (a
    piece received from a worker, or from `_grouped_in_pieces`) rather than only at the end."""
    data_out = self._worker_handler.data_conn.output_stream(process_bundle_id, read_transform_id)
    for byte_stream in byte_streams or []:
        data_out.write(byte_stream)
        data_out.maybe_flush()
    data_out.close()


def _windowed_key_values(windowing: object) -> Callable[[object, list], Iterable]:
    """How Beam's `GroupingBuffer.partition` fires a key's values: once, in the global
    window, or as the trigger driver of the windowing says."""
    if windowing.is_default():
        globally = GlobalWindows.windowed_value(
            None,
            timestamp=GlobalWindow().max_timestamp(),
            pane_info=windowed_value.PaneInfo(
                is_first=True,
                is_last=True,
                timing=windowed_value.PaneInfoTiming.ON_TIME,
                index=0,
                nonspeculative_index=0,
            ),
        ).with_value
        return lambda key, values: [globally((key, values))]
    return trigger.create_trigger_driver(windowing, True).process_entire_key


def _grouped_in_pieces(self: execution.GroupingBuffer, n: int) -> list[list[bytes]]:
    """Beam's `GroupingBuffer.partition` (the same keys to the same of the `n` parts, in the
    same order), each part as pieces of about PIECE bytes rather than one stream, and each
    key's decoded values dropped once encoded rather than all at the end."""
    if not self._grouped_output:
        fire = _windowed_key_values(self._windowing)
        coder_impl = self._post_grouped_coder.get_impl()
        key_coder_impl = self._key_coder.get_impl()
        parts: list[list[bytes]] = [[] for _ in range(n)]
        streams = [create_OutputStream() for _ in range(n)]
        for index, encoded_key in enumerate(list(self._table)):
            stream = streams[index % n]
            for fired in fire(key_coder_impl.decode(encoded_key), self._table.pop(encoded_key)):
                coder_impl.encode_to_stream(fired, stream, True)
            if stream.size() >= PIECE:
                parts[index % n].append(stream.get())
                streams[index % n] = create_OutputStream()
        for part, stream in zip(parts, streams, strict=True):
            part.append(stream.get())
        self._grouped_output = parts
    return self._grouped_output


def _trimming_after(run_stage: Callable[..., object]) -> Callable[..., object]:
    """`run_stage`, then the heap's free pages given back (glibc's malloc_trim): a stage
    frees thousands of small blocks (decoded groups, elements) between longer-lived ones,
    which would otherwise stay in the launcher's RSS, and its peak, for the next stage."""
    trim = _libc_function("malloc_trim")

    def run_and_trim(*args: object, **kwargs: object) -> object:
        try:
            return run_stage(*args, **kwargs)
        finally:
            if trim is not None:
                trim(0)

    return run_and_trim


def _input_elements_released(
    self: data_plane.InMemoryDataChannel,
    instruction_id: str,
    unused_expected_inputs: object,
    abort_callback: Callable[[], bool] | None = None,
) -> Iterator[beam_fn_api_pb2.Elements.Data | beam_fn_api_pb2.Elements.Timers]:
    """Beam's `InMemoryDataChannel.input_elements`, each message let go once read: Beam
    held them all until the last was read, beside what the reader made of them (a stage's
    whole input or output, in the launcher's in-process worker, held twice)."""
    other_inputs = []
    elements = self._inputs
    index = 0
    while index < len(elements):  # as Beam's loop: messages added meanwhile are read too
        element, elements[index] = elements[index], None
        index += 1
        if element.instruction_id != instruction_id:
            other_inputs.append(element)
        elif isinstance(element, beam_fn_api_pb2.Elements.Timers):
            if not element.is_last:
                yield element
        elif element.data or element.is_last:
            yield element
    self._inputs = other_inputs


def send_in_pieces() -> None:
    """Has the data between the launcher and its workers, in this process and those it forks,
    cross in pieces of about PIECE bytes (messages, and the parts of a grouping's output),
    each message of an in-process worker let go once read, and the launcher give its heap's
    free pages back after each stage. Idempotent."""
    if getattr(fn_runner.FnApiRunner._execute_bundle, "trims", False):
        return
    data_plane.ClosableOutputStream.create = staticmethod(_piecewise_stream)
    data_plane._DEFAULT_SIZE_FLUSH_THRESHOLD = PIECE  # the most gathered into one message
    fn_runner.BundleManager._send_input_to_worker = _send_input_in_pieces
    execution.GroupingBuffer.partition = _grouped_in_pieces
    data_plane.InMemoryDataChannel.input_elements = _input_elements_released
    fn_runner.FnApiRunner._execute_bundle = _trimming_after(fn_runner.FnApiRunner._execute_bundle)
    fn_runner.FnApiRunner._execute_bundle.trims = True


# At import: the launcher imports this module before it forks its zygote (pipeline/workers.py),
# so every worker forked from it, and the worker inside an in-process run, has them.
release_sent_outputs()
send_in_pieces()
