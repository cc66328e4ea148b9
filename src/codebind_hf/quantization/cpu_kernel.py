"""Register-blocked nearest-code search for CPU (a small C++ kernel built on first use), exact to the torch path.

The torch path (``rows @ centers.T`` in chunks, then ``max``) spends most of its time in the max-with-index
reduction over the written scores. ``csrc/nearest_code.cpp`` keeps a block of rows and a tile of 16 codes in
vector registers and tracks each row's best and second-best score, so no score reaches memory.

Exactness: its sums round differently from BLAS, so the kernel also certifies each choice. Any fp32 evaluation of
a ``d``-term dot product is within ``γ_d |r| |c|`` of the exact value (``γ_d = d u / (1 - d u)``, ``u = 2**-24``),
whatever the order or FMA use; when the kernel's best beats its runner-up by more than four such errors, the
torch path ranks the same code strictly first. Rows within that margin (ties, near ties, NaN: about one in
10,000 random rows) come back as ``-1`` and are settled by the torch path itself, so the indices equal the torch
path's everywhere, tie-breaking included.

Built with ``torch.utils.cpp_extension.load`` (a C++ compiler and ninja are needed; the build is cached) the first
time a large enough search runs; without a compiler, on another device or dtype, or with ``CODEBIND_CPU_KERNEL=0``
in the environment, callers use the torch path.
"""

from __future__ import annotations

import ctypes
import hashlib
import logging
import os
import platform
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch

logger = logging.getLogger(__name__)

_SOURCE = Path(__file__).with_name("csrc") / "nearest_code.cpp"
_LANES = 16  # codes per register tile; the kernel's kLanes
# Below this many scores (rows * K) the torch path is fast enough and no build is triggered.
MIN_SCORES = 1 << 20
# Widest rows the kernel takes: past a few dozen dims BLAS is compute-bound and the max is no longer the cost.
MAX_DIM = 32
# Rows per thread task: large enough that a task's work dwarfs starting it.
_ROWS_PER_TASK = 1 << 15
_ERROR_MARGIN = 8.0  # certified margin in units of γ_d |r| max|c|: 4 needed, 2x slack for the bound's own rounding
_ABS_MARGIN = 1e-30  # floor for rows so small that subnormal rounding dominates

_lock = threading.Lock()
_library: ctypes.CDLL | None = None
_failed = False


def _cpu_tag() -> str:
    """Short hash of the CPU's feature flags: the build uses -march=native, so a cache shared between
    machines must not hand one CPU's binary to another."""
    flags = platform.machine() + platform.processor()
    try:
        with open("/proc/cpuinfo") as info:
            flags += next((line for line in info if line.startswith(("flags", "Features"))), "")
    except OSError:
        pass
    return hashlib.sha1(flags.encode()).hexdigest()[:10]


def _load() -> ctypes.CDLL | None:
    """Build (once per machine, cached by torch) and load the kernel; ``None`` when that is not possible."""
    global _library, _failed
    with _lock:
        if _library is not None or _failed:
            return _library
        try:
            from torch.utils import cpp_extension

            path = cpp_extension.load(
                name=f"codebind_nearest_code_{_cpu_tag()}",
                sources=[str(_SOURCE)],
                extra_cflags=["-O3", "-march=native"],
                is_python_module=False,
                verbose=False,
            )
            library = ctypes.CDLL(path)
            library.codebind_nearest_code.argtypes = [
                ctypes.c_void_p, ctypes.c_int64, ctypes.c_int32, ctypes.c_void_p, ctypes.c_void_p,
                ctypes.c_int64, ctypes.c_float, ctypes.c_float, ctypes.c_void_p,
            ]  # fmt: skip
            library.codebind_nearest_code.restype = ctypes.c_int
            if library.codebind_nearest_code_lanes() != _LANES:
                raise RuntimeError("kernel lane count differs from the wrapper's")
            _library = library
        except Exception as error:  # no compiler, no ninja, unsupported flags: the torch path stays
            logger.debug("CPU nearest-code kernel unavailable (%s); using the torch path", error)
            _failed = True
    return _library


def cpu_nearest_code_available(rows: torch.Tensor, centers: torch.Tensor, min_scores: int = MIN_SCORES) -> bool:
    """Whether :func:`cpu_nearest_code` applies: fp32 CPU tensors ``(R, d)`` and ``(K, d)`` with ``d <= MAX_DIM``,
    at least ``min_scores`` scores, fp32 matmuls at full precision (the exactness argument assumes it), and the
    kernel built."""
    return (
        os.environ.get("CODEBIND_CPU_KERNEL", "1") != "0"
        and rows.device.type == "cpu"
        and centers.device.type == "cpu"
        and rows.dtype == torch.float32
        and centers.dtype == torch.float32
        and rows.ndim == 2
        and centers.ndim == 2
        and rows.shape[1] == centers.shape[1]
        and rows.shape[1] <= MAX_DIM
        and 1 <= centers.shape[0] < 1 << 31
        and rows.shape[0] * centers.shape[0] >= min_scores
        and torch.get_float32_matmul_precision() == "highest"
        and _load() is not None
    )


def cpu_nearest_code(
    rows: torch.Tensor,
    centers: torch.Tensor,
    settle: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    num_threads: int | None = None,
) -> torch.Tensor:
    """Index `(R,)` of the max-dot-product row of ``centers`` `(K, d)` for each row of ``rows`` `(R, d)`.

    Args:
        settle (`Callable`): the reference search, called on the rows the kernel cannot certify (see the module
            doc); the result equals ``settle(rows, centers)``.
        num_threads (`int`, *optional*): threads to split the rows over; default ``torch.get_num_threads()``.
    """
    library = _load()
    if library is None:
        raise RuntimeError("the CPU nearest-code kernel could not be built; check cpu_nearest_code_available first")
    rows = rows.detach().contiguous()
    centers = centers.detach()
    size, dim = centers.shape
    padded = -(-size // _LANES) * _LANES
    codes_t = centers.new_zeros(dim, padded)
    codes_t[:, :size] = centers.t()
    bias = centers.new_full((padded,), float("-inf"))
    bias[:size] = 0.0
    unit = dim * 2.0**-24
    margin = _ERROR_MARGIN * unit / (1 - unit) * float(centers.norm(dim=1).max())
    out = torch.empty(rows.shape[0], dtype=torch.long)

    def run(start: int, stop: int) -> None:
        status = library.codebind_nearest_code(
            rows.data_ptr() + start * dim * 4, stop - start, dim, codes_t.data_ptr(), bias.data_ptr(), padded,
            margin, _ABS_MARGIN, out.data_ptr() + start * 8,
        )  # fmt: skip
        if status:
            raise RuntimeError(f"nearest-code kernel rejected its arguments (status {status})")

    threads = num_threads or torch.get_num_threads()
    tasks = [(s, min(s + _ROWS_PER_TASK, rows.shape[0])) for s in range(0, rows.shape[0], _ROWS_PER_TASK)]
    if threads <= 1 or len(tasks) <= 1:
        for start, stop in tasks:
            run(start, stop)
    else:
        # ctypes releases the GIL during the call, so Python threads run the kernel in parallel.
        with ThreadPoolExecutor(min(threads, len(tasks))) as pool:
            for future in [pool.submit(run, start, stop) for start, stop in tasks]:
                future.result()
    unsure = (out < 0).nonzero().squeeze(1)
    if unsure.numel():
        out[unsure] = settle(rows[unsure], centers)
    return out


__all__ = ["MAX_DIM", "MIN_SCORES", "cpu_nearest_code", "cpu_nearest_code_available"]
