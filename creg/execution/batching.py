"""How the run loop groups samples into batches: length bucketing and ``--batch-size auto``.

A batch is padded to its longest sequence, so a batch that mixes a 256-token image with a
1024-token one computes ~4x the first sample's work for nothing. :func:`batches` reads the
(lazy) sample stream a window of ``window`` batches at a time and sorts each window by an
estimate of the sequence length before cutting it into batches; samples of equal length keep
their benchmark order, so a benchmark whose images all have one size (the synthetic one)
gets exactly the batches it got before. Results do not depend on the grouping: every
per-sample quantity is computed per sample (random draws are keyed by sample id).

``--batch-size auto`` (:func:`resolve_batch_size`): on a GPU, the largest batch (up to
:data:`MAX_AUTO_BATCH`) whose explain pass fits the device. The longest sample of the first
window is explained at batch sizes 1 and 2 while the device's peak memory is read; the peak is
close to linear in the batch size, so the two peaks predict the largest size that fits 90 % of
the free memory, and one pass at that size checks it (an out-of-memory error shrinks it). Three
probe passes instead of the ~2 log2(64) of doubling and bisection, which on a 7B model at 1024
vision tokens cost more than a 16-sample run (the earlier GPU measurements, docs/changelog.md). Without peak-memory readings
(another device kind) it falls back to doubling and bisecting. On the CPU, :data:`CPU_AUTO_BATCH` (docs/speed.md: batching on the CPU only spreads the
fixed per-call overhead, which is paid off by 8 samples).
"""

from __future__ import annotations

from typing import Any, Callable, Iterable, Iterator, Sequence

from creg.core.sample import Sample

AUTO = "auto"
#: ``--batch-size auto`` on the CPU.
CPU_AUTO_BATCH = 8
#: Upper bound of ``--batch-size auto`` on a GPU.
MAX_AUTO_BATCH = 64
#: Samples sorted together by :func:`batches`: this many batches' worth.
BUCKET_WINDOW = 8


def length_key(sample: Sample, adapter: Any = None) -> tuple[int, int]:
    """A sort key that grows with the sample's sequence length.

    An adapter may define ``sequence_length(sample) -> int`` (its exact token count); otherwise
    the image area (vision tokens grow with it until the processor's ``max_pixels`` caps them)
    and the length of the object names (the prompt) stand for it.
    """
    exact = getattr(adapter, "sequence_length", None)
    if callable(exact):
        return int(exact(sample)), 0
    w, h = sample.image_size
    return int(w) * int(h), len(sample.ref_name) + len(sample.tgt_name)


def batches(samples: Iterable[Sample], size: int, *, skip: Iterable[str] = (), key: Callable[[Sample], Any] | None = None,
            window: int = BUCKET_WINDOW, on_skip: Callable[[Sample], None] | None = None) -> Iterator[list[Sample]]:
    """Batches of ``size`` samples of similar length from the stream ``samples`` (read lazily).

    Samples whose id is in ``skip`` (already done) are left out (``on_skip`` is called for each).
    With ``key`` (e.g. :func:`length_key`) and ``size > 1`` each window of ``size * window``
    samples is sorted by ``key`` (stable) before it is cut; without, batches follow the stream.
    """
    if size < 1:
        raise ValueError(f"batch size must be >= 1, got {size}")
    skip = set(skip)
    buffer: list[Sample] = []
    span = size * max(1, window) if key is not None and size > 1 else size
    for s in samples:
        if s.id in skip:
            if on_skip is not None:
                on_skip(s)
            continue
        buffer.append(s)
        if len(buffer) >= span:
            yield from _cut(buffer, size, key)
            buffer = []
    if buffer:
        yield from _cut(buffer, size, key)


def _cut(buffer: list[Sample], size: int, key: Callable[[Sample], Any] | None) -> Iterator[list[Sample]]:
    if key is not None and size > 1:
        keys = [key(s) for s in buffer]
        buffer = [buffer[i] for i in sorted(range(len(buffer)), key=lambda i: keys[i])]
    for i in range(0, len(buffer), size):
        yield buffer[i:i + size]


def padding_fraction(groups: Sequence[Sequence[Sample]], length: Callable[[Sample], float]) -> float:
    """The share of computed positions that are padding when each batch is padded to its
    longest member: ``1 - sum(lengths) / sum(len(batch) * max length)``."""
    real = padded = 0.0
    for g in groups:
        lens = [float(length(s)) for s in g]
        real += sum(lens)
        padded += len(lens) * max(lens)
    return 0.0 if padded == 0 else 1.0 - real / padded


def parse_batch_size(value: Any) -> int | str:
    """``--batch-size``: a positive integer or ``auto``; ValueError (one line) otherwise."""
    if isinstance(value, str):
        text = value.strip().lower()
        if text == AUTO:
            return AUTO
        if not text.isdigit():
            raise ValueError(f"--batch-size {value!r}: expected a positive integer or 'auto'")
        value = int(text)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"--batch-size {value!r}: expected a positive integer or 'auto'")
    return value


def is_out_of_memory(error: BaseException) -> bool:
    """True for a device (or host) out-of-memory error from torch."""
    import torch  # lazy: torch

    oom = tuple(t for t in (getattr(torch, "OutOfMemoryError", None), getattr(torch.cuda, "OutOfMemoryError", None)) if t)
    return isinstance(error, oom) or (isinstance(error, RuntimeError) and "out of memory" in str(error).lower())


def largest_fitting(fits: Callable[[int], bool], limit: int = MAX_AUTO_BATCH) -> int:
    """The largest ``n`` in ``1..limit`` with ``fits(n)``, assuming ``fits`` is monotone
    (doubling until it fails, then bisection: ~2 log2(limit) calls). At least 1."""
    good, n = 0, 1
    while n <= limit and fits(n):
        good, n = n, n * 2
    if good == 0:
        return 1
    bad = min(n, limit + 1)
    while bad - good > 1:
        mid = (good + bad) // 2
        if fits(mid):
            good = mid
        else:
            bad = mid
    return good


class DeviceMemory:
    """Peak-memory readings of one CUDA device for :func:`resolve_batch_size` (tests pass a fake)."""

    def __init__(self, device: Any):
        import torch  # lazy: torch

        self.torch, self.device = torch, device

    def start(self) -> None:
        """Forget the previous peak."""
        self.torch.cuda.synchronize(self.device)
        self.torch.cuda.reset_peak_memory_stats(self.device)
        self.base = self.torch.cuda.memory_allocated(self.device)

    def peak(self) -> int:
        """Bytes allocated at the peak since :meth:`start`, above the level at :meth:`start`."""
        self.torch.cuda.synchronize(self.device)
        return self.torch.cuda.max_memory_allocated(self.device) - self.base

    def available(self) -> int:
        """Bytes a batch may still take: free device memory plus what torch holds unallocated."""
        free, _total = self.torch.cuda.mem_get_info(self.device)
        return int(free + self.torch.cuda.memory_reserved(self.device) - self.torch.cuda.memory_allocated(self.device))


def predicted_batch(peak_1: int, peak_2: int, available: int, limit: int, *, headroom: float = 0.9) -> int | None:
    """The largest ``n`` with ``peak_1 + (n - 1) * (peak_2 - peak_1) <= headroom * available``
    (peak memory linear in the batch size, read at 1 and 2), within ``2..limit``; None when the
    readings do not grow (nothing to extrapolate from)."""
    per_sample = peak_2 - peak_1
    if per_sample <= 0:
        return None
    n = 1 + int((headroom * available - peak_1) // per_sample)
    return max(2, min(limit, n))


def resolve_batch_size(requested: int | str, *, device: Any, try_batch: Callable[[int], None] | None = None,
                       limit: int = MAX_AUTO_BATCH, memory: Any = None) -> int:
    """The batch size to run with: ``requested`` when it is a number; for ``auto``,
    :data:`CPU_AUTO_BATCH` off the GPU, else the largest size for which ``try_batch(n)`` (one
    explain pass over ``n`` copies of a long sample) fits: predicted from the peak memory at 1
    and 2 (``memory``: a :class:`DeviceMemory`, made for CUDA devices when omitted) and checked
    once; by doubling and bisection where there are no readings."""
    if requested != AUTO:
        return int(requested)
    import torch  # lazy: torch

    dev = torch.device(device) if device is not None else torch.device("cpu")
    if dev.type != "cuda" or try_batch is None:
        return CPU_AUTO_BATCH
    if memory is None and torch.cuda.is_available():
        memory = DeviceMemory(dev)

    def fits(n: int) -> bool:
        try:
            try_batch(n)
            return True
        except Exception as e:  # noqa: BLE001 - only out-of-memory means "too big"
            if not is_out_of_memory(e) and not is_out_of_memory(getattr(e, "__cause__", None) or e):
                raise
            return False
        finally:
            torch.cuda.empty_cache()

    if memory is None:
        return largest_fitting(fits, limit)
    peaks = []
    for n in (1, 2):
        memory.start()
        if not fits(n):
            return 1
        peaks.append(memory.peak())
    n = predicted_batch(peaks[0], peaks[1], memory.available(), limit)
    if n is None:
        return largest_fitting(fits, limit)
    good = 2
    while n > good:
        if fits(n):
            return n
        n = max(good, int(n * 0.8))
    return good
