"""Activation-patching sweep speed against TransformerLens, and the PatchingView slider round trip.

Sweep: a full `resid_pre`, `attn_out` and `mlp_out` sweep over every layer and position of the
demo model on held-out IOI prompt pairs (`demo.tasks.ioi_prompts`; the corrupt prompt has the
second mention of the subject replaced by the indirect object). TransformerLens: `run_with_cache`
of the clean prompt plus `transformer_lens.patching.get_act_patch_{resid_pre,attn_out,mlp_out}`
(one forward per patch). Ours: `Patcher` (clean, corrupt and clean-cache forwards) plus
`Patcher.sweep` for the three components (many patches per batched forward). Both get the same
metric (`logit_diff(IO, S)`, a batch mean); the numbers are checked equal (max |difference|
reported). Timed in alternation (`interleaved_medians`). Target: at least 3x faster.

Slider: a `PatchingView` in JupyterLab 4 (the e2e harness) in headless Chromium, two cells
selected; the page sets the alpha slider and fires its `input` event, and we time from there to
the next animation frame after the view wrote the kernel's metric for that alpha. Median of the
moves after two warm-up moves. Target: at most 150 ms.

Run: `.venv/bin/python benchmarks/bench_patching.py` (writes its section of benchmarks/README.md).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
from pathlib import Path

os.environ.setdefault("TQDM_DISABLE", "1")  # TransformerLens's per-patch progress bars

import torch  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "e2e"))
sys.path.insert(0, str(Path(__file__).parent))

from _common import interleaved_medians, machine, publish  # noqa: E402

SECTION = "bench_patching"
COMPONENTS = ("resid_pre", "attn_out", "mlp_out")


def ioi_pairs(n: int, seed: int = 0) -> tuple[list[str], list[str], list[str], list[str]]:
    """(clean, corrupt, IO, S): held-out IOI prompts of one token length; corrupt swaps the
    last mention of S for IO."""
    from interp_widgets.demo.tasks import ioi_prompts

    rows = ioi_prompts(n * 8, seed=seed)
    clean, corrupt, io, s = [], [], [], []
    for prompt, a, b in rows:
        head, tail = prompt.rsplit(b, 1)
        clean.append(prompt)
        corrupt.append(head + a + tail)
        io.append(a)
        s.append(b)
    return clean, corrupt, io, s


def same_length(model, clean, corrupt, io, s, n):
    """The first n pairs whose prompts all share the first pair's token length."""
    lengths = [len(model.to_tokens(c)[0]) for c in clean]
    keep = [i for i, k in enumerate(lengths)
            if k == lengths[0] and len(model.to_tokens(corrupt[i])[0]) == k][:n]
    return ([clean[i] for i in keep], [corrupt[i] for i in keep], [io[i] for i in keep],
            [s[i] for i in keep])


def random_llama(n_layers: int, folder: str) -> str:
    """A random Llama-architecture checkpoint of real small-model widths (d_model 576, 9 heads /
    3 KV heads, d_mlp 1536, as SmolLM-135M) with the demo tokenizer, saved to `folder`."""
    sys.path.insert(0, str(REPO / "tests"))
    import archs

    _, path = archs.build("llama", Path(folder), n_layers=n_layers, hidden_size=576,
                          num_attention_heads=9, num_key_value_heads=3, intermediate_size=1536,
                          max_position_embeddings=2048, initializer_range=0.1)
    return str(path)


def sweep_bench(model, n_prompts: int, repeats: int) -> dict:
    from transformer_lens import patching as tlp

    from interp_widgets.analysis import Patcher, logit_diff

    clean, corrupt, io, s = same_length(model, *ioi_pairs(n_prompts), n_prompts)
    metric = logit_diff(io, s).bind(model)
    tl_fns = {"resid_pre": tlp.get_act_patch_resid_pre, "attn_out": tlp.get_act_patch_attn_out,
              "mlp_out": tlp.get_act_patch_mlp_out}

    def ours():
        with torch.no_grad():
            p = Patcher(model, clean, corrupt, metric)
            return {c: p.sweep(c, normalize=False).values for c in COMPONENTS}

    class BatchingOnly(Patcher):
        """Ours without skipping unchanged cells, the shared KV prefix or last-only logits."""

        def _noop(self, component, positions):
            return torch.zeros(self.grid_shape(component, positions), dtype=torch.bool)

        def _start(self, cells):
            return 0

    def batching_only():
        with torch.no_grad():
            p = BatchingOnly(model, clean, corrupt, metric)
            p._last_only = False
            return {c: p.sweep(c, normalize=False).values for c in COMPONENTS}

    def theirs():
        with torch.no_grad():
            ct, kt = model.to_tokens(clean), model.to_tokens(corrupt)
            _, cache = model.bridge.run_with_cache(ct)
            return {c: tl_fns[c](model.bridge, kt, cache, metric).cpu() for c in COMPONENTS}

    a, b, a0 = ours(), theirs(), batching_only()
    max_diff = max(float((x[c] - b[c]).abs().max()) for x in (a, a0) for c in COMPONENTS)
    times = interleaved_medians({"ours": ours, "batching": batching_only, "tl": theirs},
                                repeats=repeats, warmup=1)
    n_pos = model.to_tokens(clean[0]).shape[1]
    return {"ours_s": times["ours"], "tl_s": times["tl"], "speedup": times["tl"] / times["ours"],
            "batching_s": times["batching"], "skipped": skipped(model, clean, corrupt, metric),
            "max_diff": max_diff, "prompts": len(clean), "positions": n_pos,
            "patches": len(COMPONENTS) * model.cfg.n_layers * n_pos, "example": clean[0],
            "corrupt": corrupt[0]}


def skipped(model, clean, corrupt, metric) -> str:
    """How many cells of the three sweeps are unchanged between clean and corrupt (not run)."""
    from interp_widgets.analysis import Patcher

    p = Patcher(model, clean, corrupt, metric)
    masks = [p._noop(c, "each") for c in COMPONENTS]
    return f"{sum(int(m.sum()) for m in masks)} of {sum(m.numel() for m in masks)}"


SLIDER_CELLS = [
    "import torch\nimport interp_widgets as iw\nfrom interp_widgets.widgets import PatchingView\n"
    "torch.set_num_threads(1)\nmodel = iw.load_model({model!r})",
    "view = PatchingView(model, {clean!r}, {corrupt!r}, {io!r}, {s!r})\nview",
]

JS_SLIDER = """
async ([n, warm]) => {
  const root = document.querySelector(".iw-root[data-view='patching']");
  const cells = root.querySelectorAll(".iw-heatgrid[data-kind='exact'] .iw-lens-cell");
  cells[cells.length - 1].click();  // one head_out cell and one resid_pre cell
  root.querySelector(".iw-heatgrid[data-component='resid_pre'] .iw-lens-cell").click();
  const slider = root.querySelector("input.iw-patch-alpha");
  const out = root.querySelector(".iw-patch-result");
  const frame = () => new Promise((r) => requestAnimationFrame(() => r()));
  const times = [];
  for (let i = 0; i < n + warm; i++) {
    const target = String(Number((0.05 + ((i * 37) % 90) / 100).toFixed(2)));
    await new Promise((r) => setTimeout(r, 30));
    const done = new Promise((resolve) => {
      const obs = new MutationObserver(() => {
        if (out.dataset.alpha === target && out.dataset.cells === "2") {
          obs.disconnect();
          resolve();
        }
      });
      obs.observe(out, { attributes: true });
    });
    const t0 = performance.now();
    slider.value = target;
    slider.dispatchEvent(new Event("input", { bubbles: true }));
    await done;
    await frame();
    if (i >= warm) times.push(performance.now() - t0);
  }
  return times;
}
"""


def slider_bench(model_name: str, pair: tuple[str, str, str, str], moves: int) -> list[float]:
    import e2e_harness as h
    from playwright.sync_api import sync_playwright

    clean, corrupt, io, s = pair
    cells = [SLIDER_CELLS[0].format(model=model_name),
             SLIDER_CELLS[1].format(clean=clean, corrupt=corrupt, io=io, s=s)]
    with h.JupyterServer() as server, sync_playwright() as pw:
        browser = h.launch_browser(pw)
        try:
            name = server.put_notebook("bench_patching.ipynb", h.new_notebook(cells))
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            nbp = h.NotebookPage(page, server, name).open()
            nbp.run_all(timeout=300_000)
            page.wait_for_selector(".iw-root[data-view='patching'] .iw-heatgrid",
                                   timeout=60_000)
            return page.evaluate(JS_SLIDER, [moves, 2])
        finally:
            browser.close()


def main() -> None:
    global COMPONENTS
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="demo")
    parser.add_argument("--prompts", type=int, default=4, help="IOI prompt pairs per sweep")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--moves", type=int, default=30)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--no-slider", action="store_true")
    parser.add_argument("--no-write", action="store_true", help="print only")
    parser.add_argument("--random-llama", type=int, metavar="LAYERS",
                        help="sweep a random Llama of this many layers (see random_llama) "
                             "instead of --model; prints only")
    parser.add_argument("--components", nargs="*", default=list(COMPONENTS))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    import interp_widgets as iw

    COMPONENTS = tuple(args.components)
    if args.random_llama:
        import tempfile

        args.model = random_llama(args.random_llama, tempfile.mkdtemp())
        args.no_write = args.no_slider = True
    model = iw.load_model(args.model, device="cpu")
    sw = sweep_bench(model, args.prompts, args.repeats)
    print(json.dumps(sw, indent=1))
    times = []
    if not args.no_slider:
        pair = same_length(model, *ioi_pairs(1), 1)
        times = slider_bench(args.model, tuple(x[0] for x in pair), args.moves)
        print(json.dumps([round(t, 1) for t in times]))
    med = statistics.median(times) if times else float("nan")
    sweep_ok = "met" if sw["speedup"] >= 3 and sw["max_diff"] <= 1e-4 else "missed"
    slider_ok = "met" if med <= 150 else "missed"
    body = f"""## Activation patching: sweep speed and slider round trip (`benchmarks/bench_patching.py`)

| measure | ours | TransformerLens 4.3 | ratio | target | |
|---|---:|---:|---:|---|---|
| `resid_pre` + `attn_out` + `mlp_out` sweep, {sw["patches"]} patches x {sw["prompts"]} prompts | {sw["ours_s"] * 1e3:.0f} ms | {sw["tl_s"] * 1e3:.0f} ms | {sw["speedup"]:.1f}x faster | >= 3x, same numbers | {sweep_ok} |
| the same, batching alone (every cell run, full sequence, all logits) | {sw["batching_s"] * 1e3:.0f} ms | {sw["tl_s"] * 1e3:.0f} ms | {sw["tl_s"] / sw["batching_s"]:.1f}x faster | | |
| PatchingView slider: input event to updated metric in the page (median of {len(times)}) | {med:.0f} ms | | | <= 150 ms | {slider_ok} |

Sweep: `{args.model}` model ({model.cfg.n_layers} layers, {sw["positions"]} positions), {sw["prompts"]} held-out IOI pairs such as
"{sw["example"]}" / "...{sw["corrupt"].split(",")[-1]}", metric `logit_diff(IO, S)`; TransformerLens's
`get_act_patch_*` run one forward per patch. `Patcher.sweep` batches the patches, skips cells
whose clean and corrupt activations are identical ({sw["skipped"]} here, such as every position before the
first differing token; their value is the corrupt run's metric, exactly what a patched run gives),
starts each batch at its first patched position on the corrupt run's KV cache (earlier positions
cannot change in a causal model), and unembeds only the last position when the metric reads only
that. Both sides include their clean/corrupt forwards; max |ours - TransformerLens| =
{sw["max_diff"]:.1e} (both rows). Median of {args.repeats} interleaved runs, {args.threads} torch thread(s).
Slider: JupyterLab 4 + headless Chromium, 2 cells selected (a `head_out` and a `resid_pre` cell),
from setting the slider and firing `input` to the first animation frame after the view wrote the
kernel's reply; all moves (ms): {", ".join(f"{t:.0f}" for t in times)}.

Command: `.venv/bin/python benchmarks/bench_patching.py` ({machine()}, shared with other work:
expect noise).
"""  # noqa: E501
    publish(SECTION, body, write=not args.no_write)


if __name__ == "__main__":
    main()
