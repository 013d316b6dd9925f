"""Slabs of a 3D array stored raw in a file, read and written with explicit file I/O.

The cube-sized files of ``predict-volume`` (a ``.npy`` input, the accumulator, the ``.npy``
outputs) are never memory-mapped: pages mapped from a file count in the resident set size, and a
slab of crosslines of an ``(inline, crossline, sample)`` file touches pages all over it. Instead a
slab is a set of contiguous runs of bytes (one for lines along the first axis, one per inline for
crosslines), each read into or written from a buffer that holds just the slab.
"""

from __future__ import annotations

import os

import numpy as np

_ROWS_BYTES = 8 * 2**20  # when runs are tiny (depth slices), read whole rows in chunks of this


def _runs(
    shape: tuple[int, ...], itemsize: int, axis: int, start: int, stop: int
) -> tuple[int, int, int]:
    """``(count, stride, length)`` in bytes of the runs of ``start:stop`` along ``axis``."""
    outer = int(np.prod(shape[:axis], dtype=np.int64))
    inner = int(np.prod(shape[axis + 1 :], dtype=np.int64)) * itemsize
    return outer, shape[axis] * inner, (stop - start) * inner


def _pread_into(fd: int, buffer: memoryview, offset: int) -> None:
    while len(buffer):
        done = os.preadv(fd, [buffer], offset)
        if done == 0:
            raise OSError(f"unexpected end of file at byte {offset}")
        buffer, offset = buffer[done:], offset + done


def _pwrite_from(fd: int, buffer: memoryview, offset: int) -> None:
    while len(buffer):
        done = os.pwrite(fd, buffer, offset)
        buffer, offset = buffer[done:], offset + done


def _block_shape(shape: tuple[int, ...], axis: int, start: int, stop: int) -> tuple[int, ...]:
    return (*shape[:axis], stop - start, *shape[axis + 1 :])


def read_block(
    fd: int,
    offset: int,
    shape: tuple[int, ...],
    dtype: np.dtype | str,
    axis: int,
    start: int,
    stop: int,
    fortran: bool = False,
) -> np.ndarray:
    """``array[..., start:stop, ...]`` (sliced along ``axis``) of the array stored in ``fd``.

    Args:
        fd: An open file descriptor.
        offset: Byte position of the array's first element.
        shape: The stored array's shape.
        dtype: Its element type (byte order included).
        axis: The axis sliced.
        start: First index along ``axis``.
        stop: One past the last.
        fortran: The array is stored in Fortran order.

    Returns:
        A new array of ``shape`` with ``stop - start`` along ``axis``, in the stored dtype.
    """
    if fortran:
        flipped = read_block(fd, offset, shape[::-1], dtype, len(shape) - 1 - axis, start, stop)
        return flipped.T
    dtype = np.dtype(dtype)
    out = np.empty(_block_shape(shape, axis, start, stop), dtype)
    count, stride, length = _runs(shape, dtype.itemsize, axis, start, stop)
    if length == 0:
        return out
    first = offset + (stride // shape[axis]) * start
    if length >= 4096 or count == 1:
        flat = memoryview(out.reshape(-1).view(np.uint8))
        for i in range(count):
            _pread_into(fd, flat[i * length : (i + 1) * length], first + i * stride)
        return out
    rows = max(1, _ROWS_BYTES // stride)
    sliced = out.reshape(count, -1).view(np.uint8)
    begin = (stride // shape[axis]) * start
    for a in range(0, count, rows):
        b = min(a + rows, count)
        chunk = np.empty((b - a, stride), np.uint8)
        _pread_into(fd, memoryview(chunk.reshape(-1)), offset + a * stride)
        sliced[a:b] = chunk[:, begin : begin + length]
    return out


def write_block(
    fd: int, offset: int, shape: tuple[int, ...], axis: int, start: int, values: np.ndarray
) -> None:
    """Store ``values`` as ``array[..., start:start + k, ...]`` (along ``axis``), C order.

    Only the bytes of the block are written, so processes may write disjoint blocks at once.

    Args:
        fd: An open file descriptor.
        offset: Byte position of the array's first element.
        shape: The stored array's shape.
        axis: The axis sliced.
        start: First index along ``axis``.
        values: The block, in the stored dtype, of ``shape`` with ``k`` along ``axis``.
    """
    stop = start + values.shape[axis]
    assert values.shape == _block_shape(shape, axis, start, stop), (values.shape, shape)
    values = np.ascontiguousarray(values)
    count, stride, length = _runs(shape, values.itemsize, axis, start, stop)
    if length == 0:
        return
    first = offset + (stride // shape[axis]) * start
    flat = memoryview(values.reshape(-1).view(np.uint8))
    for i in range(count):
        _pwrite_from(fd, flat[i * length : (i + 1) * length], first + i * stride)
