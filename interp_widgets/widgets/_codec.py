"""Binary array codec, the Python half of js/src/codec.ts.

An array travels as ``{"dtype", "shape", "buffer": memoryview}`` (little-endian, C order);
ipywidgets sends the memoryview as a binary buffer and the browser receives a DataView. A sparse
matrix travels as CSR: ``{"format": "csr", "shape", "indptr", "indices", "data"}``. A list of
strings (token strings) travels packed: ``{"format": "strings", "utf8": memoryview, "lengths"}``
(one UTF-8 buffer and each string's length in bytes), plus ``"rows"`` for a list of lists.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

DTYPES = {
    "float32": np.dtype("<f4"),
    "float16": np.dtype("<f2"),
    "int32": np.dtype("<i4"),
    "uint8": np.dtype("u1"),
    "uint16": np.dtype("<u2"),
    "uint32": np.dtype("<u4"),
}


def to_numpy(x: Any) -> np.ndarray:
    """A numpy array from a tensor (any device, grad or not), array or nested list."""
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu()
        return (x.float() if x.dtype == torch.bfloat16 else x).numpy()
    return np.asarray(x)


def _check_dtype(dtype: str) -> np.dtype:
    if dtype not in DTYPES:
        raise ValueError(f"dtype {dtype!r} cannot travel to the browser; "
                         f"use one of {list(DTYPES)}.")
    return DTYPES[dtype]


def encode_array(x: Any, dtype: str = "float32") -> dict[str, Any]:
    """Encode a tensor/array of any shape as {"dtype", "shape", "buffer": memoryview}.

    Integer dtypes must hold the values exactly: out-of-range values are an error, not a wrap."""
    target = _check_dtype(dtype)
    arr = to_numpy(x)
    if target.kind in "iu" and arr.size:
        info = np.iinfo(target)
        if arr.dtype.kind == "f" and not np.isfinite(arr).all():
            raise ValueError(f"cannot encode NaN or inf as {dtype}")
        if arr.min() < info.min or arr.max() > info.max:
            raise ValueError(f"values {arr.min()}..{arr.max()} do not fit in {dtype}")
    out = np.asarray(arr, dtype=target, order="C")
    return {"dtype": dtype, "shape": list(out.shape), "buffer": memoryview(out.tobytes())}


def decode_array(enc: dict[str, Any]) -> np.ndarray:
    """The inverse of `encode_array` (accepts the buffer as memoryview, bytes or bytearray)."""
    dt = _check_dtype(enc["dtype"])
    shape = tuple(int(s) for s in enc["shape"])
    buf = bytes(enc["buffer"])
    need = int(np.prod(shape, dtype=np.int64)) * dt.itemsize
    if len(buf) != need:
        raise ValueError(f"array of shape {list(shape)} ({enc['dtype']}) needs {need} bytes, "
                         f"got {len(buf)}")
    return np.frombuffer(buf, dtype=dt).reshape(shape)


def encode_csr(x: Any, dtype: str = "float32") -> dict[str, Any]:
    """Encode a 2-D matrix as CSR: a scipy.sparse matrix, a sparse torch tensor, or a dense array
    (whose zeros are dropped). -> {"format": "csr", "shape", "indptr", "indices", "data"}."""
    if hasattr(x, "tocsr"):  # scipy.sparse, duck-typed so scipy stays optional
        m = x.tocsr()
        m.sort_indices()
        indptr, indices, data, shape = m.indptr, m.indices, m.data, m.shape
    else:
        if isinstance(x, torch.Tensor) and x.layout == torch.sparse_coo:
            x = x.coalesce()  # sorted by (row, col)
            rows, indices = to_numpy(x.indices())
            data, shape = to_numpy(x.values()), tuple(x.shape)
        else:
            dense = to_numpy(x.to_dense() if isinstance(x, torch.Tensor) else x)
            if dense.ndim != 2:
                raise ValueError(f"CSR needs a 2-D matrix, got shape {list(dense.shape)}")
            rows, indices = np.nonzero(dense)
            data, shape = dense[rows, indices], dense.shape
        indptr = np.concatenate([[0], np.cumsum(np.bincount(rows, minlength=shape[0]))])
    return {
        "format": "csr",
        "shape": [int(shape[0]), int(shape[1])],
        "indptr": encode_array(indptr, "int32"),
        "indices": encode_array(indices, "int32"),
        "data": encode_array(data, dtype),
    }


def decode_csr(enc: dict[str, Any]) -> np.ndarray:
    """The dense matrix of an encoded CSR matrix (for tests and checks)."""
    if enc.get("format") != "csr":
        raise ValueError(f"expected a CSR matrix, got format {enc.get('format')!r}")
    indptr, indices = decode_array(enc["indptr"]), decode_array(enc["indices"])
    data = decode_array(enc["data"])
    rows, cols = enc["shape"]
    if len(indptr) != rows + 1 or len(indices) != len(data):
        raise ValueError(f"malformed CSR matrix of shape {enc['shape']}")
    out = np.zeros((rows, cols), dtype=data.dtype)
    out[np.repeat(np.arange(rows), np.diff(indptr)), indices] = data
    return out


def _smallest_uint(top: int) -> str:
    return "uint8" if top < 2**8 else "uint16" if top < 2**16 else "uint32"


def _utf8(s: str) -> bytes:
    try:
        return s.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate (not text): U+FFFD in its place, as JS does
        return s.encode("utf-16", "surrogatepass").decode("utf-16", "replace").encode("utf-8")


def encode_strings(strings: Sequence[str] | Sequence[Sequence[str]]) -> dict[str, Any]:
    """Pack strings, or lists of strings (e.g. documents of tokens), for the browser.

    -> {"format": "strings", "utf8": memoryview (all strings, UTF-8, back to back),
        "lengths": uint8/uint16/uint32 [n] (each string's bytes; the smallest dtype that holds
        the longest), "rows": uint32 [n_lists] (strings per list; only for a list of lists)}.
    Against a JSON list this saves the quotes, commas and escapes (4+ bytes a string), and the
    browser decodes all of it with one TextDecoder call (js/src/codec.ts `decodeStrings`).
    A lone surrogate, which is not text, arrives as U+FFFD."""
    if isinstance(strings, str):
        raise ValueError("expected a list of strings, not one string")
    items = list(strings)
    nested = bool(items) and all(isinstance(x, (list, tuple)) for x in items)
    flat = [s for row in items for s in row] if nested else items
    for s in flat:
        if not isinstance(s, str):
            raise ValueError(f"expected strings, got {type(s).__name__} {s!r}")
    parts = [_utf8(s) for s in flat]
    lengths = np.fromiter(map(len, parts), dtype=np.int64, count=len(parts))
    top = int(lengths.max()) if len(parts) else 0
    out = {"format": "strings", "utf8": memoryview(b"".join(parts)),
           "lengths": encode_array(lengths, _smallest_uint(top))}
    if nested:
        out["rows"] = encode_array([len(row) for row in items], "uint32")
    return out


def decode_strings(enc: dict[str, Any]) -> list[str] | list[list[str]]:
    """The inverse of `encode_strings` (a list of lists when "rows" is there)."""
    if enc.get("format") != "strings":
        raise ValueError(f"expected packed strings, got format {enc.get('format')!r}")
    data = bytes(enc["utf8"])
    lengths = decode_array(enc["lengths"])
    if int(lengths.sum(dtype=np.int64)) != len(data):
        raise ValueError(f"string lengths add up to {int(lengths.sum())} bytes, "
                         f"the buffer holds {len(data)}")
    ends = np.cumsum(lengths, dtype=np.int64).tolist()
    flat = [data[a:b].decode("utf-8") for a, b in zip([0, *ends[:-1]], ends)]
    if "rows" not in enc:
        return flat
    rows = decode_array(enc["rows"]).tolist()
    if sum(rows) != len(flat):
        raise ValueError(f"rows hold {sum(rows)} strings, there are {len(flat)}")
    out, start = [], 0
    for r in rows:
        out.append(flat[start:start + r])
        start += r
    return out


PLACEHOLDER = "$buffer"


def extract_buffers(value: Any, buffers: list[memoryview] | None = None
                    ) -> tuple[Any, list[memoryview]]:
    """Replace every memoryview/bytes inside dicts and lists by {"$buffer": i}.

    Returns (JSON-able value, buffers); js/src/rpc.ts `restoreBuffers` is the inverse."""
    buffers = [] if buffers is None else buffers

    def walk(v: Any) -> Any:
        if isinstance(v, (memoryview, bytes, bytearray)):
            buffers.append(memoryview(v))
            return {PLACEHOLDER: len(buffers) - 1}
        if isinstance(v, dict):
            return {k: walk(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [walk(x) for x in v]
        return v

    return walk(value), buffers


def restore_buffers(value: Any, buffers: list[memoryview]) -> Any:
    """The inverse of `extract_buffers` (for tests)."""
    if isinstance(value, dict):
        if set(value) == {PLACEHOLDER}:
            return buffers[value[PLACEHOLDER]]
        return {k: restore_buffers(v, buffers) for k, v in value.items()}
    if isinstance(value, list):
        return [restore_buffers(v, buffers) for v in value]
    return value
