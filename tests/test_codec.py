"""The binary codec (widgets/_codec.py) and the request/response protocol of BaseWidget.

`js/test/fixtures/codec_cases.json` holds arrays encoded here; the vitest suite decodes the same
file, so the two halves are checked against each other. Regenerate it with
`python tests/test_codec.py` after changing the encoder."""

import base64
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import traitlets as t

from interp_widgets.widgets._base import BaseWidget, request_handler
from interp_widgets.widgets._codec import (
    decode_array,
    decode_csr,
    decode_strings,
    encode_array,
    encode_csr,
    encode_strings,
    extract_buffers,
    restore_buffers,
)

FIXTURE = Path(__file__).resolve().parents[1] / "js" / "test" / "fixtures" / "codec_cases.json"


@pytest.mark.parametrize("dtype, values", [
    ("float32", [0.0, -1.5, 3.25, 1e-7, -2e30, float("nan")]),
    ("float16", [0.0, -1.5, 3.25, 2.0 ** -14, 65504.0, float("inf")]),
    ("int32", [0, -1, 2**31 - 1, -(2**31), 42, 7]),
    ("uint8", [0, 1, 127, 128, 254, 255]),
    ("uint16", [0, 1, 255, 256, 65534, 65535]),
    ("uint32", [0, 1, 65535, 65536, 2**31, 2**32 - 1]),
])
@pytest.mark.parametrize("kind", ["numpy", "torch", "list"])
def test_round_trip(dtype, values, kind):
    arr = np.array(values).reshape(2, 3)
    x = {"numpy": arr, "torch": torch.tensor(arr), "list": arr.tolist()}[kind]
    enc = encode_array(x, dtype)
    assert enc["dtype"] == dtype and enc["shape"] == [2, 3]
    assert isinstance(enc["buffer"], memoryview)
    out = decode_array(enc)
    np.testing.assert_array_equal(out, arr.astype(out.dtype))


def test_float16_rounds_and_bfloat16_tensors_encode():
    enc = encode_array(torch.tensor([0.1, 1 / 3], dtype=torch.bfloat16), "float16")
    np.testing.assert_allclose(decode_array(enc), [0.1, 1 / 3], rtol=1e-2)
    assert bytes(encode_array([0.1], "float16")["buffer"]) == b"\x66\x2e"  # 0x2e66, little-endian


def test_scalars_empty_and_non_contiguous():
    assert decode_array(encode_array(3.5)).shape == ()
    assert decode_array(encode_array(np.zeros((0, 4)))).shape == (0, 4)
    x = torch.arange(12.0).reshape(3, 4).T  # not contiguous
    np.testing.assert_array_equal(decode_array(encode_array(x)), x.numpy())


def test_errors_say_what_is_wrong():
    with pytest.raises(ValueError, match="cannot travel to the browser"):
        encode_array([1.0], "float64")
    with pytest.raises(ValueError, match="do not fit in uint8"):
        encode_array([0, 256], "uint8")
    with pytest.raises(ValueError, match="NaN or inf"):
        encode_array([float("nan")], "int32")
    enc = encode_array([1, 2, 3], "int32")
    enc["shape"] = [4]
    with pytest.raises(ValueError, match="needs 16 bytes, got 12"):
        decode_array(enc)


def test_csr_from_dense_torch_sparse_and_scipy():
    dense = np.array([[0, 2, 0], [0, 0, 0], [1, 0, 3.5]], dtype=np.float32)
    enc = encode_csr(dense, "float16")
    assert enc["format"] == "csr" and enc["shape"] == [3, 3]
    np.testing.assert_array_equal(decode_array(enc["indptr"]), [0, 1, 1, 3])
    np.testing.assert_array_equal(decode_array(enc["indices"]), [1, 0, 2])
    np.testing.assert_array_equal(decode_csr(enc), dense)
    np.testing.assert_array_equal(decode_csr(encode_csr(torch.tensor(dense).to_sparse())), dense)
    sparse = pytest.importorskip("scipy.sparse")
    np.testing.assert_array_equal(decode_csr(encode_csr(sparse.coo_matrix(dense))), dense)
    with pytest.raises(ValueError, match="2-D"):
        encode_csr(np.zeros(3))


# -- packed strings ----------------------------------------------------------------------------
TRICKY = ["", " the", "\n", "é", "日本語", "😀", "e\u0301", "\ufeffbom", "\x00nul", "a\r\nb",
          '<img src=x onerror="alert(1)">', "&amp;", "\\u0041", '"q"']


def test_strings_round_trip_as_one_utf8_buffer_and_byte_lengths():
    enc = encode_strings(TRICKY)
    assert enc["format"] == "strings" and "rows" not in enc
    assert isinstance(enc["utf8"], memoryview)
    assert bytes(enc["utf8"]) == "".join(TRICKY).encode("utf-8")
    assert enc["lengths"]["dtype"] == "uint8"
    assert decode_array(enc["lengths"]).tolist() == [len(s.encode()) for s in TRICKY]
    assert decode_strings(enc) == TRICKY


def test_strings_lengths_take_the_smallest_dtype_that_holds_the_longest():
    assert encode_strings(["x" * 255])["lengths"]["dtype"] == "uint8"
    assert encode_strings(["a", "x" * 256])["lengths"]["dtype"] == "uint16"
    assert encode_strings(["é" * 40_000])["lengths"]["dtype"] == "uint32"  # 80,000 bytes
    for strings in (["a", "x" * 256], ["é" * 40_000, "b"]):
        assert decode_strings(encode_strings(strings)) == strings


def test_lists_of_strings_keep_their_rows():
    docs = [["a", " b"], [], ["😀"], [""]]
    enc = encode_strings(docs)
    assert decode_array(enc["rows"]).tolist() == [2, 0, 1, 1]
    assert enc["rows"]["dtype"] == "uint32"
    assert decode_strings(enc) == docs
    assert decode_strings(encode_strings([])) == []


def test_strings_are_smaller_than_a_json_list():
    tokens = [" the", " cat", ",", " said", ' "', "\n"] * 500
    enc = encode_strings(tokens)
    packed = len(enc["utf8"]) + len(enc["lengths"]["buffer"])
    assert packed < 0.7 * len(json.dumps(tokens))


def test_strings_a_lone_surrogate_becomes_the_replacement_character():
    assert decode_strings(encode_strings(["a\ud800b", "ok"])) == ["a\ufffdb", "ok"]


def test_strings_errors_say_what_is_wrong():
    with pytest.raises(ValueError, match="not one string"):
        encode_strings("abc")
    with pytest.raises(ValueError, match="expected strings, got int"):
        encode_strings(["a", 3])
    enc = encode_strings(["ab", "c"])
    enc["utf8"] = memoryview(b"abcd")
    with pytest.raises(ValueError, match="add up to 3 bytes, the buffer holds 4"):
        decode_strings(enc)
    with pytest.raises(ValueError, match="expected packed strings"):
        decode_strings(encode_array([1.0]))


def test_buffers_become_placeholders_and_come_back():
    value = {"a": encode_array([1.0, 2.0]), "list": [b"xy", 3], "s": "text"}
    stripped, buffers = extract_buffers(value)
    assert stripped["a"]["buffer"] == {"$buffer": 0}
    assert stripped["list"][0] == {"$buffer": 1}
    json.dumps(stripped)  # JSON-able
    back = restore_buffers(stripped, buffers)
    np.testing.assert_array_equal(decode_array(back["a"]), [1.0, 2.0])
    assert bytes(back["list"][0]) == b"xy"


# -- request / response ------------------------------------------------------------------------
class Echo(BaseWidget):
    _view = t.Unicode("echo").tag(sync=True)

    @request_handler("square")
    def _square(self, n: int):
        return {"values": encode_array(np.arange(n) ** 2, "int32"), "n": n}

    @request_handler("boom")
    def _boom(self):
        return 1 / 0


@pytest.fixture
def echo():
    widget = Echo()
    sent = []
    widget.send = lambda content, buffers=None: sent.append((content, buffers))
    return widget, sent


def test_request_success_sends_buffers_out_of_band(echo):
    widget, sent = echo
    widget._on_msg(widget, {"kind": "request", "id": "r1", "method": "square", "args": {"n": 4}},
                   [])
    (content, buffers), = sent
    assert content["kind"] == "response" and content["id"] == "r1" and content["ok"] is True
    assert content["result"]["values"]["buffer"] == {"$buffer": 0}
    json.dumps(content)
    out = decode_array({**content["result"]["values"], "buffer": buffers[0]})
    np.testing.assert_array_equal(out, [0, 1, 4, 9])


@pytest.mark.parametrize("method, args, message", [
    ("nope", {}, "unknown request 'nope'; this widget answers: boom, square"),
    ("square", {"m": 1}, "bad arguments ['m']"),
    ("boom", {}, "ZeroDivisionError: division by zero (in test_codec.py:"),
])
def test_request_errors_come_back_as_messages(echo, method, args, message):
    widget, sent = echo
    widget._on_msg(widget, {"kind": "request", "id": "r2", "method": method, "args": args}, [])
    (content, _), = sent
    assert content["ok"] is False and content["id"] == "r2"
    assert message in content["error"] and content["error"].startswith(f"{method}: ")


def test_other_messages_are_ignored(echo):
    widget, sent = echo
    widget._on_msg(widget, {"kind": "something-else"}, [])
    widget._on_msg(widget, "text", [])
    assert sent == []


# -- the cross-language fixture ----------------------------------------------------------------
def codec_fixture() -> dict:
    """Arrays encoded by Python, with the values JS must decode them to (non-finite as strings)."""
    def case(name, values, shape, dtype):
        enc = encode_array(np.array(values, dtype=np.float64).reshape(shape), dtype)
        decoded = decode_array(enc).astype(np.float64).ravel().tolist()
        return {"name": name, "dtype": dtype, "shape": enc["shape"],
                "b64": base64.b64encode(bytes(enc["buffer"])).decode(),
                "values": [v if math.isfinite(v) else str(v) for v in decoded]}

    csr = encode_csr(np.array([[0, 0.5, 0], [0, 0, 0], [2, 0, -1]]), "float16")

    def strings(name, values):
        enc = encode_strings(values)
        out = {"name": name, "utf8": base64.b64encode(bytes(enc["utf8"])).decode(),
               "lengths": {"dtype": enc["lengths"]["dtype"], "shape": enc["lengths"]["shape"],
                           "b64": base64.b64encode(bytes(enc["lengths"]["buffer"])).decode()},
               "strings": values}
        if "rows" in enc:
            out["rows"] = base64.b64encode(bytes(enc["rows"]["buffer"])).decode()
        return out

    return {
        "arrays": [
            case("float32", [0.0, -1.5, 1 / 3, 1e-30, float("nan"), float("-inf")], [2, 3],
                 "float32"),
            case("float16", [0.1, -2.5, 65504, 2.0**-24, float("nan"), float("inf")], [3, 2],
                 "float16"),
            case("int32", [0, -1, 2**31 - 1, -(2**31)], [4], "int32"),
            case("uint8", [0, 1, 128, 255], [2, 2], "uint8"),
        ],
        "csr": {
            "shape": csr["shape"],
            **{k: base64.b64encode(bytes(csr[k]["buffer"])).decode()
               for k in ("indptr", "indices", "data")},
            "dense": decode_csr(csr).astype(np.float64).ravel().tolist(),
        },
        "strings": [
            strings("ascii", ["The", " cat", "", ",", "\n", '<b>"x"</b>', "&amp;"]),
            strings("unicode", TRICKY),
            strings("long", ["a", "é" * 200, "😀" * 100, "z"]),  # uint16 lengths
            strings("documents", [["a", " b"], [], ["日本", "😀"]]),
        ],
    }


def test_js_fixture_is_what_python_encodes():
    assert FIXTURE.exists(), "run `python tests/test_codec.py` to write the JS fixture"
    assert json.loads(FIXTURE.read_text()) == json.loads(json.dumps(codec_fixture()))


if __name__ == "__main__":
    FIXTURE.parent.mkdir(parents=True, exist_ok=True)
    FIXTURE.write_text(json.dumps(codec_fixture(), indent=1) + "\n")
    print(f"wrote {FIXTURE}")
