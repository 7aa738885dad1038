"""A safe wire format for values that cross the grading sandbox's wall: never pickle.

``dumps(value)`` writes ``b"CGW1"``, a 4-byte header length, a JSON header and the raw bytes of every tensor;
``loads(data)`` reads it back, checking every length, shape and dtype against the bytes it was given, so a
hostile file can fail to load but can never run code or allocate more than ``max_bytes``.

What it carries (nested freely, up to ``MAX_DEPTH`` levels and ``MAX_NODES`` values):

- ``None``, ``bool``, ``int``, ``float`` (NaN and infinities included), ``str``;
- ``list``, ``tuple``, ``dict`` with string keys;
- ``torch.Tensor`` and ``numpy.ndarray`` of plain numeric dtypes (detached, moved to the CPU);
- :class:`Handle`: a reference to an object that stays in the student's kernel (a model, a generator function);
- :class:`Code`: the source of a small function the kernel builds itself (a test vector field), with data to bind;
- :class:`Generator`: the state of a ``torch.Generator``, so a seeded draw in the kernel is the grader's draw;
- ``torch.dtype``.

Used by :mod:`course_utils.course.rpc` (inside the sandbox) and :mod:`course_utils.course.grading` (outside).
It imports only the standard library, NumPy and torch.
"""

from __future__ import annotations

import json
import math
import struct
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import torch

__all__ = ["dumps", "loads", "Handle", "Code", "Generator", "WireError", "MAX_DEPTH", "MAX_NODES"]

MAGIC = b"CGW1"
MAX_DEPTH = 64
MAX_NODES = 100_000
_HEADER_MAX = 16 * 2**20
_DTYPES = {
    "float16": (torch.float16, np.float16), "bfloat16": (torch.bfloat16, None), "float32": (torch.float32, np.float32),
    "float64": (torch.float64, np.float64), "complex64": (torch.complex64, np.complex64),
    "complex128": (torch.complex128, np.complex128), "int8": (torch.int8, np.int8), "int16": (torch.int16, np.int16),
    "int32": (torch.int32, np.int32), "int64": (torch.int64, np.int64), "uint8": (torch.uint8, np.uint8),
    "bool": (torch.bool, np.bool_),
}
_TORCH_NAME = {v[0]: k for k, v in _DTYPES.items()}
_NUMPY_NAME = {np.dtype(v[1]): k for k, v in _DTYPES.items() if v[1] is not None}


class WireError(ValueError):
    """The bytes are not a valid message of this format, or the value cannot be sent."""


@dataclass(frozen=True)
class Handle:
    """An object that stays in the kernel; ``type`` is its class, as the kernel reports it."""

    id: int
    type: str = "object"


@dataclass(frozen=True)
class Code:
    """The source of one expression the kernel evaluates into a function, e.g. ``"lambda t, x: (1 + t) * x @ A.T"``,
    with ``env`` (data only) bound as names; ``torch`` and ``math`` are always available."""

    source: str
    env: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Generator:
    """A ``torch.Generator``'s state; the kernel rebuilds the generator from it."""

    state: torch.Tensor


def _tensor_bytes(t: torch.Tensor) -> tuple[str, list[int], bytes]:
    t = t.detach().to("cpu").contiguous()
    if t.dtype not in _TORCH_NAME or t.is_sparse or t.is_quantized:
        raise WireError(f"a tensor of dtype {t.dtype} cannot be sent")
    name = _TORCH_NAME[t.dtype]
    raw = t.view(torch.int16).numpy().tobytes() if t.dtype == torch.bfloat16 else t.numpy().tobytes()
    return name, list(t.shape), raw


def dumps(value: Any, to_handle: Callable[[Any], Handle] | None = None) -> bytes:
    """Encode ``value``; objects the format cannot carry become handles through ``to_handle`` (or fail)."""
    blobs: list[bytes] = []
    tensors: list[dict] = []
    offset = 0
    nodes = 0

    def add(name: str, shape: list[int], raw: bytes) -> int:
        nonlocal offset
        tensors.append({"dtype": name, "shape": shape, "offset": offset, "nbytes": len(raw)})
        blobs.append(raw)
        offset += len(raw)
        return len(tensors) - 1

    def enc(v: Any, depth: int) -> Any:
        nonlocal nodes
        nodes += 1
        if depth > MAX_DEPTH or nodes > MAX_NODES:
            raise WireError("the value is nested too deeply or has too many parts to send")
        if v is None or isinstance(v, (bool, str)):
            return v
        if isinstance(v, int):
            return v
        if isinstance(v, float):
            return v if math.isfinite(v) else {"float": repr(v)}
        if isinstance(v, np.generic) and not isinstance(v, np.object_):
            return enc(v.item(), depth + 1)
        if isinstance(v, torch.Tensor) and type(v) in (torch.Tensor, torch.nn.Parameter):
            try:
                return {"tensor": add(*_tensor_bytes(v))}
            except WireError:
                if to_handle is None:
                    raise
        elif isinstance(v, np.ndarray) and v.dtype in _NUMPY_NAME:
            a = np.ascontiguousarray(v)
            return {"ndarray": add(_NUMPY_NAME[a.dtype], list(a.shape), a.tobytes())}
        elif isinstance(v, torch.dtype) and v in _TORCH_NAME:
            return {"dtype": _TORCH_NAME[v]}
        elif isinstance(v, (list, tuple)) and type(v) in (list, tuple):
            return {type(v).__name__: [enc(x, depth + 1) for x in v]}
        elif isinstance(v, dict) and type(v) is dict and all(isinstance(k, str) for k in v):
            return {"dict": [[k, enc(x, depth + 1)] for k, x in v.items()]}
        elif isinstance(v, Handle):
            return {"handle": int(v.id), "type": str(v.type)}
        elif isinstance(v, Code):
            return {"code": str(v.source), "env": enc(dict(v.env), depth + 1)}
        elif isinstance(v, Generator):
            return {"generator": add(*_tensor_bytes(v.state))}
        elif isinstance(v, torch.Generator):
            return {"generator": add(*_tensor_bytes(v.get_state()))}
        if to_handle is None:
            raise WireError(f"a {type(v).__module__}.{type(v).__qualname__} cannot be sent as data")
        return enc(to_handle(v), depth + 1)

    header = json.dumps({"value": enc(value, 0), "tensors": tensors}, allow_nan=False).encode()
    if len(header) > _HEADER_MAX:
        raise WireError("the value's description is too large to send")
    return MAGIC + struct.pack("<I", len(header)) + header + b"".join(blobs)


def loads(data: bytes, max_bytes: int = 256 * 2**20) -> Any:
    """Decode bytes from :func:`dumps`; raise :class:`WireError` for anything malformed or too large."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise WireError("expected bytes")
    data = bytes(data)
    if len(data) > max_bytes:
        raise WireError(f"the message is {len(data)} bytes, more than the {max_bytes} allowed")
    if len(data) < 8 or data[:4] != MAGIC:
        raise WireError("not a message of the course's wire format")
    (hlen,) = struct.unpack("<I", data[4:8])
    if hlen > _HEADER_MAX or 8 + hlen > len(data):
        raise WireError("the header length is out of range")
    try:
        header = json.loads(data[8:8 + hlen].decode())
    except (UnicodeDecodeError, ValueError, RecursionError) as err:
        raise WireError(f"the header is not valid JSON ({type(err).__name__})") from None
    if not isinstance(header, dict) or not isinstance(header.get("tensors"), list) or "value" not in header:
        raise WireError("the header has no value or tensor table")
    body = memoryview(data)[8 + hlen:]
    specs = header["tensors"]
    if len(specs) > MAX_NODES:
        raise WireError("too many tensors")
    nodes = 0
    decoded = 0  # bytes of tensors made so far: a tensor referenced many times is decoded many times

    def tensor(i: Any, as_numpy: bool = False):
        if not isinstance(i, int) or isinstance(i, bool) or not 0 <= i < len(specs):
            raise WireError("a tensor reference is out of range")
        s = specs[i]
        if not isinstance(s, dict) or s.get("dtype") not in _DTYPES:
            raise WireError("a tensor has an unknown dtype")
        shape, off, nbytes = s.get("shape"), s.get("offset"), s.get("nbytes")
        if not (isinstance(shape, list) and len(shape) <= 32 and all(isinstance(d, int) and not isinstance(d, bool) and 0 <= d for d in shape)):
            raise WireError("a tensor has an invalid shape")
        if not all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in (off, nbytes)) or off + nbytes > len(body):
            raise WireError("a tensor's bytes lie outside the message")
        tdtype, ndtype = _DTYPES[s["dtype"]]
        itemsize = torch.empty((), dtype=tdtype).element_size()
        count = math.prod(shape)
        if count * itemsize != nbytes:
            raise WireError("a tensor's shape does not match its number of bytes")
        nonlocal decoded
        decoded += nbytes
        if decoded > max_bytes:
            raise WireError(f"the decoded tensors would take more than {max_bytes} bytes")
        raw = body[off:off + nbytes]
        if tdtype == torch.bfloat16:
            arr = np.frombuffer(raw, dtype=np.int16).copy().reshape(shape)
            return torch.from_numpy(arr).view(torch.bfloat16)
        arr = np.frombuffer(raw, dtype=ndtype).copy().reshape(shape)
        return arr if as_numpy else torch.from_numpy(arr)

    def dec(v: Any, depth: int) -> Any:
        nonlocal nodes
        nodes += 1
        if depth > MAX_DEPTH or nodes > MAX_NODES:
            raise WireError("the value is nested too deeply or has too many parts")
        if v is None or isinstance(v, (bool, int, str)):
            return v
        if isinstance(v, float):
            return v
        if isinstance(v, dict) and len(v) in (1, 2):
            (key, arg), *rest = v.items()
            if key == "float" and arg in ("nan", "inf", "-inf") and not rest:
                return float(arg)
            if key == "tensor" and not rest:
                return tensor(arg)
            if key == "ndarray" and not rest:
                return tensor(arg, as_numpy=True)
            if key == "dtype" and arg in _DTYPES and not rest:
                return _DTYPES[arg][0]
            if key in ("list", "tuple") and isinstance(arg, list) and not rest:
                items = [dec(x, depth + 1) for x in arg]
                return items if key == "list" else tuple(items)
            if key == "dict" and isinstance(arg, list) and not rest:
                out = {}
                for pair in arg:
                    if not (isinstance(pair, list) and len(pair) == 2 and isinstance(pair[0], str)):
                        raise WireError("a dict entry is malformed")
                    out[pair[0]] = dec(pair[1], depth + 1)
                return out
            if key == "handle" and isinstance(arg, int) and not isinstance(arg, bool):
                typ = v.get("type", "object")
                return Handle(arg, typ[:200] if isinstance(typ, str) else "object")
            if key == "code" and isinstance(arg, str) and len(v) == 2 and "env" in v:
                env = dec(v["env"], depth + 1)
                if not isinstance(env, dict):
                    raise WireError("a code's environment is not a dict")
                return Code(arg, env)
            if key == "generator" and not rest:
                return Generator(tensor(arg))
        raise WireError(f"an encoded value is malformed: {str(v)[:80]!r}")

    return dec(header["value"], 0)
