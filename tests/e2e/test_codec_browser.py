"""Binary arrays through a real browser: Python's `_codec` encodes, the shipped bundle decodes.

A small anywidget defined in the kernel syncs float16 / float32 / int32 / uint8 arrays and a CSR
matrix (memoryviews inside a synced dict, as every interp_widgets view sends them). Its JS imports
the shipped `interp_widgets/static/index.js` (from a blob: URL, as anywidget loads modules), decodes
every array with the bundle's own `decodeArray` / `decodeCSR`, and sets a small `echo` trait with
what it got. The test reads `echo` back from the kernel and compares element by element.
"""

from __future__ import annotations

import json

import e2e_harness as h
import numpy as np
import pytest

pytestmark = pytest.mark.e2e

# Values chosen to be exact in their dtype (float16: max, smallest normal and a subnormal).
ARRAYS = {
    "f16": ("float16", [[0.5, -1.25, 65504.0], [6.103515625e-05, 5.960464477539063e-08, 0.0]]),
    "f32": ("float32", [3.140000104904175, -2.5e-10, 1.0e30, 0.0, 7.0]),
    "i32": ("int32", [[0, -1], [2147483647, -2147483648], [123456789, 42]]),
    "u8": ("uint8", [0, 1, 127, 128, 254, 255]),
}
CSR_DENSE = [
    [0.0, 1.5, 0.0, 0.0, -2.0, 0.0],
    [0.0, 0.0, 0.0, 0.0, 0.0, 0.0],
    [3.25, 0.0, 0.0, 0.5, 0.0, 0.0],
    [0.0, 0.0, -0.125, 0.0, 0.0, 8.0],
]

ESM = r"""
const BUNDLE = __BUNDLE__;
let loaded = null;
const bundle = () => (loaded ??= import(
  URL.createObjectURL(new Blob([BUNDLE], { type: "text/javascript" }))));

async function render({ model, el }) {
  const mod = await bundle();
  const c = mod.codec ?? mod;
  const out = {};
  if (typeof c.decodeArray !== "function" || typeof c.decodeCSR !== "function") {
    out.__error__ = "interp_widgets/static/index.js exports no decodeArray/decodeCSR (add "
      + "`export { decodeArray, decodeCSR, csrToDense } from \"./codec\"` to js/src/index.ts); "
      + "it exports: " + Object.keys(mod).join(", ");
  } else {
    for (const [name, enc] of Object.entries(model.get("arrays"))) {
      try {
        if (enc.format === "csr") {
          const m = c.decodeCSR(enc);
          const dense = c.csrToDense ? c.csrToDense(m) : null;
          out[name] = { shape: m.shape, nnz: m.data.length,
                        values: dense ? Array.from(dense) : null,
                        transport: enc.data.buffer.constructor.name };
        } else {
          const a = c.decodeArray(enc);
          out[name] = { dtype: a.dtype, shape: a.shape, type: a.data.constructor.name,
                        values: Array.from(a.data), transport: enc.buffer.constructor.name };
        }
      } catch (e) {
        out[name] = { error: String(e) };
      }
    }
  }
  el.textContent = "decoded: " + Object.keys(out).join(", ");
  el.classList.add("iw-codec-echo");
  model.set("echo", out);
  model.save_changes();
}
export default { render };
"""

SETUP = """
import json, numpy as np, anywidget, traitlets
from interp_widgets.widgets._base import STATIC
from interp_widgets.widgets._codec import encode_array, encode_csr

ESM = {esm!r}
ARRAYS = {arrays!r}
CSR_DENSE = {csr!r}

class CodecEcho(anywidget.AnyWidget):
    _esm = ESM.replace("__BUNDLE__", json.dumps((STATIC / "index.js").read_text()))
    arrays = traitlets.Dict().tag(sync=True)
    echo = traitlets.Dict().tag(sync=True)

payload = {{name: encode_array(np.array(v), dt) for name, (dt, v) in ARRAYS.items()}}
payload["csr"] = encode_csr(np.array(CSR_DENSE, np.float32), "float32")
codec_echo = CodecEcho(arrays=payload)
codec_echo
"""


def test_codec_round_trip_in_browser(jupyter_server, context, artifacts_dir, request):
    nb = h.new_notebook([SETUP.format(esm=ESM, arrays=ARRAYS, csr=CSR_DENSE)])
    name = jupyter_server.put_notebook("codec.ipynb", nb)
    nbp = h.NotebookPage(context.new_page(), jupyter_server, name).open()
    try:
        nbp.run_all(timeout=120_000)
        nbp.page.wait_for_selector(".iw-codec-echo", timeout=60_000)
        echo = {}
        for _ in range(20):  # the echo's comm message may trail the view's render
            out = nbp.run_code("print(json.dumps(codec_echo.echo))")
            echo = json.loads(out.strip().splitlines()[-1])
            if echo:
                break
        assert "__error__" not in echo, echo.get("__error__")
        assert set(echo) == {*ARRAYS, "csr"}, echo
        for name, (dtype, values) in ARRAYS.items():
            got = echo[name]
            assert "error" not in got, (name, got)
            want = np.array(values, dtype=dtype)
            assert got["dtype"] == dtype
            assert got["shape"] == list(want.shape)
            assert got["transport"] == "DataView"  # binary buffer, not a JSON list
            # float16 is widened to float32 in JS; every value here is exact in both.
            np.testing.assert_array_equal(
                np.array(got["values"], dtype=np.float64),
                want.astype(np.float64).ravel(),
                err_msg=name,
            )
        csr = echo["csr"]
        dense = np.array(CSR_DENSE, dtype=np.float32)
        assert csr["shape"] == list(dense.shape)
        assert csr["nnz"] == int((dense != 0).sum())
        assert csr["transport"] == "DataView"
        np.testing.assert_array_equal(
            np.array(csr["values"], np.float32).reshape(dense.shape), dense
        )
        nbp.page.locator(".iw-codec-echo").screenshot(path=str(artifacts_dir / "codec-echo.png"))
    finally:
        h.save_failure_artifacts(request, nbp, "codec", artifacts_dir)
        nbp.page.close()
