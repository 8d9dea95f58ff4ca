"""Bytes sent to the browser: our widgets against circuitsvis, for the same data.

Cases (issue: benchmarks):
  * 4,096 tokens x 4 per-token metrics: `iw.TokenHeatmap` vs
    `circuitsvis.tokens.colored_tokens_multi`.
  * 12 heads of 512 x 512 attention: `iw.AttentionView.from_patterns` (metadata + thumbnails up
    front, then the on-demand float16 pattern of every one of the 12 heads, as if the person
    clicked them all) vs `circuitsvis.attention.attention_heads`.

Ours is measured on the wire format: every comm message the widget opens or sends (ipywidgets
serializes the synced state as JSON with the memoryviews pulled out as binary buffers), recorded by
a stand-in comm, JSON-encoded exactly as jupyter_client packs messages, plus the buffers' bytes and
the `display_data` that shows the view. Circuitsvis sends one `display_data` whose `text/html`
holds the data as JSON lists: offline (this machine, and any notebook without internet) it also
inlines its 1.3 MB JS bundle into every output; online it imports the bundle from unpkg, which we
do not count. Target: at most a quarter of circuitsvis's bytes.

Run: `.venv/bin/python benchmarks/bench_payload.py` (writes its section of benchmarks/README.md).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any

import comm
import torch
from comm.base_comm import BaseComm
from jupyter_client.session import json_packer

import interp_widgets as iw
from interp_widgets.widgets import AttentionView, TokenHeatmap

sys.path.insert(0, str(Path(__file__).parent))
from _common import machine, publish  # noqa: E402

SECTION = "bench_payload"
CODE_TRAITS = ("_esm", "_css")
TOKEN_SOURCE = ["demo corpus"]


class RecordingComm(BaseComm):
    """A comm that records what it would publish instead of sending it."""

    opened: list[RecordingComm] = []

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.log: list[dict[str, Any]] = []
        RecordingComm.opened.append(self)
        super().__init__(*args, **kwargs)

    def publish_msg(
        self,
        msg_type: str,
        data: Any = None,
        metadata: Any = None,
        buffers: Any = None,
        **keys: Any,
    ) -> None:
        content = {"comm_id": self.comm_id, "data": data or {}, **keys}
        self.log.append(
            {
                "type": msg_type,
                "data": data or {},
                "json": len(json_packer(content)) + len(json_packer(metadata or {})),
                "buffers": [memoryview(b).nbytes for b in buffers or []],
            }
        )


def recording() -> None:
    RecordingComm.opened = []
    comm.create_comm = RecordingComm


def wire_bytes() -> dict[str, int]:
    """Bytes of every recorded message: JSON, binary buffers, and code (JS/CSS) inside the JSON."""
    out = {"json": 0, "buffers": 0, "code": 0, "messages": 0}
    for c in RecordingComm.opened:
        for m in c.log:
            out["messages"] += 1
            out["json"] += m["json"]
            out["buffers"] += sum(m["buffers"])
            state = m["data"].get("state", {}) if isinstance(m["data"], dict) else {}
            out["code"] += sum(len(json_packer(state[k])) for k in CODE_TRAITS if k in state)
    return out


def display_bytes(bundle: dict[str, Any]) -> int:
    """A display_data message's content as jupyter_client packs it."""
    return len(json_packer({"data": bundle, "metadata": {}, "transient": {}}))


def ours(make) -> dict[str, int]:
    """Bytes our widget sends: comm opens (state + buffers), the display message, and whatever
    `make` asks for afterwards (requests answered by the kernel)."""
    recording()
    widget, after = make()
    sizes = wire_bytes()
    shown = widget._repr_mimebundle_()
    bundle = shown[0] if isinstance(shown, tuple) else shown
    sizes["display"] = display_bytes(bundle)
    if after:
        before = {id(c): len(c.log) for c in RecordingComm.opened}
        after(widget)
        extra = {"json": 0, "buffers": 0}
        for c in RecordingComm.opened:
            for m in c.log[before.get(id(c), 0) :]:
                extra["json"] += m["json"]
                extra["buffers"] += sum(m["buffers"])
                sizes["messages"] += 1
        sizes["on_demand"] = extra["json"] + extra["buffers"]
    else:
        sizes["on_demand"] = 0
    sizes["total"] = sizes["json"] + sizes["buffers"] + sizes["display"] + sizes["on_demand"]
    sizes["data"] = sizes["total"] - sizes["code"]
    return sizes


def circuitsvis_bytes(rendered) -> dict[str, int]:
    """circuitsvis's display_data, offline (bundle inlined) and online (bundle from unpkg)."""
    text = "<circuitsvis.utils.render.RenderedHTML object>"
    return {
        "offline": display_bytes({"text/html": rendered.local_src, "text/plain": text}),
        "online": display_bytes({"text/html": rendered.cdn_src, "text/plain": text}),
    }


def sample_tokens(n: int) -> list[str]:
    """n realistic token strings: demo-corpus text through the demo tokenizer (BPE), or through a
    word/punctuation split when the demo model is not installed."""
    text = " ".join(iw.demo.corpus(max(8, n // 40), seed=0))
    try:
        from transformers import AutoTokenizer

        tok = AutoTokenizer.from_pretrained(iw.demo.MODEL_DIR)
        ids = tok.encode(text, add_special_tokens=False)
        toks = [tok.decode([i]) for i in ids]
        TOKEN_SOURCE[0] = "demo corpus, demo BPE tokenizer"
    except Exception:  # noqa: BLE001 - no demo tokenizer yet: an honest stand-in
        toks = re.findall(r"\s?\w+|\s?[^\w\s]|\s+", text)
        TOKEN_SOURCE[0] = "demo corpus split into words and punctuation"
    while len(toks) < n:
        toks = toks + toks
    return toks[:n]


def request_all_heads(view: AttentionView) -> None:
    """Answer the view's "pattern" request for every head, as the browser would make them."""
    for layer in range(view.n_layers):
        for head in range(view.n_heads):
            msg = {
                "content": {
                    "data": {
                        "method": "custom",
                        "content": {
                            "kind": "request",
                            "id": f"{layer}:{head}",
                            "method": "pattern",
                            "args": {"layer": layer, "head": head},
                        },
                    }
                },
                "buffers": [],
            }
            view.comm.handle_msg(msg)


def heatmap_case(n_tokens: int, n_metrics: int) -> tuple[dict, dict]:
    from circuitsvis.tokens import colored_tokens_multi

    gen = torch.Generator().manual_seed(0)
    tokens = sample_tokens(n_tokens)
    values = torch.randn(n_tokens, n_metrics, generator=gen)  # float32, like real metrics
    labels = ["loss", "entropy", "top1_prob", "logit_diff"][:n_metrics]
    labels += [f"m{i}" for i in range(len(labels), n_metrics)]
    ours_ = ours(
        lambda: (TokenHeatmap(tokens, {k: values[:, i] for i, k in enumerate(labels)}), None)
    )
    theirs = circuitsvis_bytes(colored_tokens_multi(tokens, values, labels=labels))
    return ours_, theirs


def attention_case(n_heads: int, n_pos: int) -> tuple[dict, dict]:
    from circuitsvis.attention import attention_heads

    gen = torch.Generator().manual_seed(0)
    tokens = sample_tokens(n_pos)
    causal = torch.ones(n_pos, n_pos, dtype=torch.bool).tril()
    scores = torch.randn(n_heads, n_pos, n_pos, generator=gen) * 3
    patterns = scores.masked_fill(~causal, float("-inf")).softmax(-1)  # [head, q, k] float32
    ids = torch.randint(1000, (n_pos,), generator=gen)
    ours_ = ours(
        lambda: (AttentionView.from_patterns(tokens, ids, patterns[None]), request_all_heads)
    )
    theirs = circuitsvis_bytes(attention_heads(patterns, tokens))
    return ours_, theirs


def kb(n: int) -> str:
    return f"{n / 1024:,.1f} KB" if n < 1024**2 else f"{n / 1024**2:,.2f} MB"


def table(rows: list[tuple[str, dict, dict]]) -> str:
    lines = [
        "| case | ours: total (data + JS/CSS) | ours: data only | circuitsvis offline "
        "(bundle inlined) | circuitsvis online (bundle from CDN, not counted) "
        "| ours / cv offline | ours data / cv online | target <= 0.25 |",
        "|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for name, o, cv in rows:
        r_off, r_on = o["total"] / cv["offline"], o["data"] / cv["online"]
        ok = (
            "met"
            if max(r_off, r_on) <= 0.25
            else ("met offline only" if r_off <= 0.25 else "missed")
        )
        lines.append(
            f"| {name} | {kb(o['total'])} | {kb(o['data'])} | {kb(cv['offline'])} | "
            f"{kb(cv['online'])} | {r_off:.3f} | {r_on:.3f} | {ok} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tokens", type=int, default=4096)
    parser.add_argument("--metrics", type=int, default=4)
    parser.add_argument("--heads", type=int, default=12)
    parser.add_argument("--pos", type=int, default=512)
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args()

    rows = [
        (
            f"TokenHeatmap, {args.tokens:,} tokens x {args.metrics} metrics",
            *heatmap_case(args.tokens, args.metrics),
        ),
        (
            f"AttentionView, {args.heads} heads x {args.pos} x {args.pos} (all heads fetched)",
            *attention_case(args.heads, args.pos),
        ),
    ]
    for name, o, cv in rows:
        print(name, json.dumps(o), json.dumps(cv))
    att = rows[1][1]
    notes = f"""
Ours: every comm message (JSON as jupyter_client packs it, plus binary buffers) and the
`display_data`. The AttentionView row includes the float16 pattern of all {args.heads} heads,
each fetched on demand: the view fetches only the heads a person clicks; before any click it
has received {kb(att["total"] - att["on_demand"])} (tokens, uint8 thumbnails, scores, bundle).
Our JS/CSS bundle travels in each widget's state; the "data only" column leaves it out.
Circuitsvis: the `display_data` of its `_repr_html_`, whose data are `tolist()` JSON; offline
it inlines its JS bundle in every output. Same tokens ({TOKEN_SOURCE[0]}) and the same float32
values (random normal metrics; causal softmax patterns) on both sides.

Command: `.venv/bin/python benchmarks/bench_payload.py` ({machine()}).
"""
    body = "## Payload: bytes sent to the browser (vs circuitsvis)\n\n" + table(rows) + "\n" + notes
    publish(SECTION, body, write=not args.no_write)


if __name__ == "__main__":
    main()
