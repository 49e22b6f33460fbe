"""openpi's wire format: msgpack, with NumPy arrays and scalars as tagged maps, so `openpi-client` and Twin's
server and client read each other's frames.

An array is `{b"__ndarray__": True, b"data": raw bytes (C order), b"dtype": dtype.str, b"shape": [dims]}`, a
NumPy scalar `{b"__npgeneric__": True, b"data": its Python value, b"dtype": dtype.str}`; everything else is plain
msgpack (str keys, lists, numbers). Object, void and complex dtypes are refused both ways (they would carry
pickles or have no portable layout). `unpack` checks every tag before it builds an array, so a malformed frame
is a `WireError` (an InputError: one line), never a crash; decoded arrays are writable copies.
"""
from __future__ import annotations

import math

import msgpack
import numpy as np

from twin_kit import InputError, one_line

REFUSED_KINDS = ("O", "V", "c")
_ND, _GEN = b"__ndarray__", b"__npgeneric__"


class WireError(InputError):
    """A frame that is not openpi's msgpack encoding (or holds an array it cannot carry)."""


def _encode(obj):
    """msgpack's `default` hook: NumPy arrays and scalars as openpi's tagged maps."""
    if isinstance(obj, (np.ndarray, np.generic)) and obj.dtype.kind in REFUSED_KINDS:
        raise WireError(f"cannot send a NumPy {obj.dtype} value (object, void and complex dtypes are refused)")
    if isinstance(obj, np.ndarray):
        return {_ND: True, b"data": obj.tobytes(), b"dtype": obj.dtype.str, b"shape": obj.shape}
    if isinstance(obj, np.generic):
        return {_GEN: True, b"data": obj.item(), b"dtype": obj.dtype.str}
    raise WireError(f"cannot send a {type(obj).__name__} value (msgpack carries dicts, lists, str, bytes, "
                    f"numbers and NumPy arrays)")


def pack(obj) -> bytes:
    """One binary frame holding `obj` (dicts, lists, str, numbers, NumPy arrays and scalars)."""
    return msgpack.packb(obj, default=_encode)


def _tag(obj: dict, key: bytes):
    """A tag's value, under openpi's bytes key or the same name as str (what clients in other languages send)."""
    return obj[key] if key in obj else obj.get(key.decode())


def _dtype(spec) -> np.dtype:
    if isinstance(spec, bytes):
        spec = spec.decode("ascii", "replace")
    try:
        dtype = np.dtype(spec)
    except (TypeError, ValueError):
        raise WireError(f"array dtype {spec!r} is not a NumPy dtype") from None
    if dtype.kind in REFUSED_KINDS:
        raise WireError(f"array dtype {dtype} is refused (object, void and complex dtypes)")
    return dtype


def _decode(obj: dict):
    """msgpack's `object_hook`: openpi's tagged maps back to NumPy values; other maps unchanged."""
    if _tag(obj, _ND):
        dtype, shape, data = _dtype(_tag(obj, b"dtype")), _tag(obj, b"shape"), _tag(obj, b"data")
        if not isinstance(shape, (list, tuple)) or not all(type(n) is int and n >= 0 for n in shape):
            raise WireError(f"array shape {shape!r} is not a list of non-negative integers")
        if not isinstance(data, bytes):
            raise WireError(f"array data is {type(data).__name__}, not bytes")
        want = math.prod(shape) * dtype.itemsize
        if len(data) != want:
            raise WireError(f"array of shape {tuple(shape)} and dtype {dtype} needs {want} bytes, got {len(data)}")
        return np.frombuffer(data, dtype).reshape(shape).copy()
    if _tag(obj, _GEN):
        dtype = _dtype(_tag(obj, b"dtype"))
        try:
            return dtype.type(_tag(obj, b"data"))
        except (TypeError, ValueError, OverflowError) as e:
            raise WireError(f"NumPy scalar of dtype {dtype}: {one_line(e)}") from None
    return obj


def unpack(frame: bytes):
    """The value in one binary frame; a frame that is not one msgpack value in openpi's encoding: WireError."""
    if not isinstance(frame, (bytes, bytearray, memoryview)):
        raise WireError(f"expected a binary msgpack frame, got {type(frame).__name__}")
    try:
        return msgpack.unpackb(frame, object_hook=_decode)
    except WireError:
        raise
    except Exception as e:  # noqa: BLE001 - msgpack raises many types (ExtraData, FormatError, ValueError, ...)
        raise WireError(f"malformed msgpack frame ({type(e).__name__}: {one_line(e)})") from None
