"""Write an investigation up: a notebook that re-runs the evidence, and a static HTML page.

The notebook rebuilds the behaviour from the recorded prompts, re-runs every claim's verifying
intervention (asserting it gives the recorded effect) and embeds the views that show the
evidence. Neither file holds anything but the model name, the prompts, the steps' numbers and
the claims: no API key or endpoint credential is ever part of an investigation.
"""

from __future__ import annotations

import html
import json
import math
from pathlib import Path
from typing import TYPE_CHECKING

from ..interchange._files import write_bytes

if TYPE_CHECKING:
    from .investigation import Investigation


def _md_table(rows: list[list[str]], head: list[str]) -> str:
    def cell(x: str) -> str:
        return str(x).replace("|", "\\|").replace("\n", " ")
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    out += ["| " + " | ".join(cell(x) for x in r) + " |" for r in rows]
    return "\n".join(out)


def _load_model_code(name: str) -> str:
    return f"model = iw.load_model({name!r})"


def write_notebook(inv: Investigation, path: Path) -> Path:
    """A runnable notebook (nbformat 4) of `inv`, written atomically to `path`."""
    import nbformat
    from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

    from .investigation import behaviour_to_dict

    b = inv.behaviour
    claims = inv.claims_list
    cells = [new_markdown_cell(
        f"# Investigation: {b.name}\n\n{b.description}\n\n{len(b)} prompts; "
        f"{len(inv.steps)} steps; {sum(c.verified for c in claims)} of {len(claims)} claims "
        "verified by an intervention." + (f"\n\nStopped early: {inv.stopped}." if inv.stopped
                                          else "") + "\n\n" + _md_table(
            [[c.kind, c.statement, "verified" if c.verified else "refuted",
              ", ".join(map(str, c.evidence))] for c in claims],
            ["kind", "claim", "check", "steps"]))]
    spec = json.dumps(json.dumps(behaviour_to_dict(b)))
    cells.append(new_code_cell(
        "import json\n\nimport interp_widgets as iw\nfrom interp_widgets.investigate import Unit, "
        "unit_effect\nfrom interp_widgets.investigate.investigation import "
        "behaviour_from_dict\n\n" + _load_model_code(inv.model_name) + "\n"
        f"behaviour = behaviour_from_dict(json.loads({spec}))\n"
        "behaviour.check(model)"))
    first_head = next((c for c in claims if c.kind == "head" and c.verified), None)
    if b.corrupt is not None and isinstance(b.prompts[0], str):
        cells.append(new_markdown_cell("## Patching, live\n\nThe first prompt and its corrupt "
                                       "twin: click cells and drag the slider."))
        cells.append(new_code_cell(
            "iw.PatchingView(model, behaviour.prompts[0], behaviour.corrupt[0], "
            "behaviour.answer[0], behaviour.wrong[0])"))
    if first_head is not None:
        cells.append(new_markdown_cell(f"## Attention of the heads\n\nClick L{first_head.layer}"
                                       f"H{first_head.index} to enlarge it."))
        cells.append(new_code_cell("iw.AttentionView(model, behaviour.prompts[0])"))
    cells.append(new_markdown_cell("## Every claim, re-checked\n\nEach cell re-runs the "
                                   "intervention that verified (or refuted) the claim and "
                                   "asserts it gives the recorded effect."))
    for c in claims:
        if c.what != "carries":
            cells.append(new_markdown_cell(f"- {c.statement}"))
            continue
        step = inv.step(max(c.evidence))
        args = step.result
        prompts = args.get("prompts", "all")
        sub = "behaviour" if prompts == "all" else (
            f"behaviour.subset([i for i, a in enumerate(behaviour.answer) if a == "
            f"{prompts[len('answer='):]!r}])")
        unit = (f"Unit({c.kind!r}, {c.layer}, {c.index!r}, {c.component!r}, {c.position!r})")
        cells.append(new_markdown_cell(f"**{'Verified' if c.verified else 'Refuted'}:** "
                                       f"{c.statement}"))
        cells.append(new_code_cell(
            f"e = unit_effect(model, {sub}, {unit}, mode={args['mode']!r})\n"
            f"print(e.unit.label, 'effect', e.estimate, 'spread', round(e.spread, 4))\n"
            f"assert abs(e.effect - {c.effect!r}) < 1e-3 * max(1.0, abs({c.effect!r}))"))
    cells.append(new_markdown_cell("## Steps\n\n" + _md_table(
        [[str(s.id), s.tool, json.dumps(s.args), s.by, f"{s.seconds:.2f}",
          (s.result or {}).get("summary", "") if s.error is None else "error: " + s.error]
         for s in inv.steps], ["id", "tool", "args", "by", "s", "result"])))
    nb = new_notebook(cells=cells, metadata={
        "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
        "language_info": {"name": "python"}})
    write_bytes(path, nbformat.writes(nb).encode())
    return path


_CSS = """body{font:14px/1.45 system-ui,sans-serif;max-width:1100px;margin:2em auto;color:#222}
table{border-collapse:collapse;width:100%;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 6px;
text-align:left;vertical-align:top}th{background:#f3f3f3}.ok{color:#0a6b2a;font-weight:600}
.no{color:#a11;font-weight:600}code{font-size:12px}@media (prefers-color-scheme:dark){body{
background:#111;color:#ddd}th{background:#222}td,th{border-color:#444}}"""


def write_html(inv: Investigation, path: Path) -> Path:
    """A static HTML page of `inv` (no script, no network), written atomically."""
    e = html.escape
    b = inv.behaviour

    def num(x: float) -> str:
        return "" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.3f}"

    rows = "".join(
        f"<tr><td>{e(c.kind)}</td><td>{c.layer}</td><td>{e(str(c.index))}</td>"
        f"<td>{num(c.effect)}</td><td>{num(c.spread)}</td>"
        f"<td class={'ok' if c.verified else 'no'}>{'verified' if c.verified else 'refuted'}"
        f"</td><td>{e(c.statement)}</td><td>{e(', '.join(map(str, c.evidence)))}</td></tr>"
        for c in inv.claims_list)
    steps = "".join(
        f"<tr><td>{s.id}</td><td>{e(s.tool)}</td><td><code>{e(json.dumps(s.args))}</code></td>"
        f"<td>{e(s.by)}</td><td>{s.seconds:.2f}</td><td>"
        + (e((s.result or {}).get("summary", "")) if s.error is None else
           "<span class=no>error:</span> " + e(s.error)) + "</td></tr>" for s in inv.steps)
    examples = "".join(f"<li><code>{e(p if isinstance(p, str) else str(p.tolist()))}</code> "
                       f"&rarr; {e(repr(a))} over {e(repr(w))}</li>"
                       for p, a, w in list(zip(b.prompts, b.answer, b.wrong))[:5])
    page = (f"<!doctype html><html><head><meta charset=utf-8><title>Investigation: "
            f"{e(b.name)}</title><style>{_CSS}</style></head><body>"
            f"<h1>Investigation: {e(b.name)}</h1><p>{e(b.description)}</p>"
            f"<p>Model {e(inv.model_name)}; {len(b)} prompts, e.g.</p><ul>{examples}</ul>"
            + (f"<p class=no>Stopped early: {e(inv.stopped)}</p>" if inv.stopped else "")
            + "".join(f"<p>{e(n)}</p>" for n in inv.notes)
            + "<h2>Claims</h2><table><tr><th>kind</th><th>layer</th><th>index</th><th>effect"
            "</th><th>spread</th><th>check</th><th>statement</th><th>steps</th></tr>"
            f"{rows}</table><h2>Steps</h2><table><tr><th>id</th><th>tool</th><th>args</th>"
            f"<th>by</th><th>s</th><th>result</th></tr>{steps}</table></body></html>")
    write_bytes(path, page.encode())
    return path
