"""Helpers for the tests of .npz reading: .npy headers, hand-made zips, bombs, patched zip entries, peak memory."""

import io
import struct
import tracemalloc
import zipfile

import numpy as np

#: Refusing a member from its header may not allocate more than this.
MAX_PEAK_BYTES = 4 * 2**20


def npy_header(shape, descr="<f8", fortran_order=False, version=(1, 0)):
    """The ``.npy`` header np.save writes for ``shape`` and ``descr``."""
    buffer = io.BytesIO()
    header = {"descr": descr, "fortran_order": fortran_order, "shape": shape}
    if version == (1, 0):
        np.lib.format.write_array_header_1_0(buffer, header)
    else:
        np.lib.format.write_array_header_2_0(buffer, header)
    return buffer.getvalue()


def npy_bytes(array):
    buffer = io.BytesIO()
    np.lib.format.write_array(buffer, array, allow_pickle=False)
    return buffer.getvalue()


def write_zip(path, members, compression=zipfile.ZIP_STORED):
    """A zip of ``{name: bytes}``, as given (no check that they are .npy)."""
    with zipfile.ZipFile(path, "w", compression=compression) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


def write_bomb(path, shape, data_bytes, key="W1", others=None):
    """An archive whose member ``key`` declares ``shape`` float64 and holds ``data_bytes`` deflated zeros.

    The zeros are streamed (1 MiB at a time, the fastest deflate level): the
    file stays a few hundred KiB and takes well under a second to write.
    ``others``: further members ``{key: array}``, stored before the bomb.
    """
    zeros = bytes(2**20)
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        for name, array in (others or {}).items():
            zf.writestr(f"{name}.npy", npy_bytes(array))
        with zf.open(f"{key}.npy", "w", force_zip64=True) as member:  # the zip's deflate level
            member.write(npy_header(shape))
            for start in range(0, data_bytes, len(zeros)):
                member.write(zeros[: min(len(zeros), data_bytes - start)])
    return path


def peak_of(call):
    """``(result or exception, peak bytes traced)`` of ``call()``."""
    tracemalloc.start()
    try:
        result = call()
    except Exception as exc:  # the caller checks which
        result = exc
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return result, peak


def central_header_offset(data, name):
    """Offset of ``name``'s central directory record in the zip bytes ``data``."""
    offset = data.index(b"PK\x01\x02")
    while data[offset + 46 : offset + 46 + struct.unpack_from("<H", data, offset + 28)[0]] != name.encode():
        offset = data.index(b"PK\x01\x02", offset + 4)
    return offset


def patch_central(path, name, *, flags=None, method=None, crc=None, compress_size=None, file_size=None):
    """Overwrite fields of ``name``'s central directory record (what zipfile reads), in place."""
    data = bytearray(path.read_bytes())
    offset = central_header_offset(bytes(data), name)
    for value, field, fmt in (
        (flags, 8, "<H"),
        (method, 10, "<H"),
        (crc, 16, "<I"),
        (compress_size, 20, "<I"),
        (file_size, 24, "<I"),
    ):
        if value is not None:
            struct.pack_into(fmt, data, offset + field, value)
    path.write_bytes(bytes(data))
    return path
