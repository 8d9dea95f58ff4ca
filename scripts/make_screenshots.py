"""Regenerate the README screenshots: docs/screenshots/<view>-<theme>.png.

    .venv/bin/python scripts/make_screenshots.py [--out docs/screenshots] [--scale 2]

Runs notebooks/quickstart.ipynb in a throw-away JupyterLab 4 (the e2e harness: 127.0.0.1, random
token, isolated settings) with headless Debian Chromium (/usr/bin/chromium, or $IW_CHROMIUM),
then, in the light and the dark theme, hovers a token of the loss heatmap, sorts the attention
heads by induction score and opens the top one, and opens the top 10 of a logit-lens cell, and
saves each widget (with its tooltip or panel) as a PNG.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "e2e"))
import e2e_harness as h  # noqa: E402

THEMES = {"light": "JupyterLab Light", "dark": "JupyterLab Dark"}


def shoot(page, locators, path: Path, pad: int = 6) -> None:
    """Screenshot the union of the locators' boxes (a tooltip may hang outside its widget), padded
    on every side but the top, where the cell's printed output may sit right above the widget."""
    boxes = [b for b in (loc.bounding_box() for loc in locators) if b]
    x0 = min(b["x"] for b in boxes) - pad
    y0 = min(b["y"] for b in boxes)
    x1 = max(b["x"] + b["width"] for b in boxes) + pad
    y1 = max(b["y"] + b["height"] for b in boxes) + pad
    page.screenshot(
        path=str(path),
        clip={
            "x": max(0, x0),
            "y": max(0, y0),
            "width": x1 - max(0, x0),
            "height": y1 - max(0, y0),
        },
    )
    print(f"wrote {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}")


def heatmap(nbp: h.NotebookPage, out: Path) -> None:
    root = nbp.page.locator(".iw-root[data-view='token_heatmap']").first
    root.scroll_into_view_if_needed()
    tokens = root.locator(".iw-token")
    token = tokens.nth(min(tokens.count() - 1, max(1, tokens.count() // 3)))
    token.hover()
    tip = root.locator(".iw-tooltip")
    tip.wait_for(state="visible")
    shoot(nbp.page, [root, tip], out)
    nbp.page.mouse.move(0, 0)


def attention(nbp: h.NotebookPage, out: Path) -> None:
    root = nbp.page.locator(".iw-root[data-view='attention']").first
    root.scroll_into_view_if_needed()
    root.locator("select.iw-head-sort").select_option("induction")
    first = root.locator("canvas.iw-head-thumb").first
    layer, head = first.get_attribute("data-layer"), first.get_attribute("data-head")
    first.click()
    detail = root.locator(f".iw-head-detail[data-layer='{layer}'][data-head='{head}']")
    detail.locator("canvas.iw-pattern").wait_for(state="visible")
    tokens = detail.locator(".iw-token")
    n = tokens.count()
    if n > 2:  # a token in the second copy: it attends to the token after its first occurrence
        tokens.nth(n - n // 4).hover()
    root.scroll_into_view_if_needed()
    shoot(nbp.page, [root], out)
    nbp.page.mouse.move(0, 0)


def logit_lens(nbp: h.NotebookPage, out: Path) -> None:
    root = nbp.page.locator(".iw-root[data-view='logit_lens']").first
    root.scroll_into_view_if_needed()
    cells = root.locator(".iw-lens-cell")
    layers = cells.evaluate_all("els => Math.max(...els.map(e => +e.dataset.layer))")
    last = cells.evaluate_all(
        "(els, l) => Math.max(...els.filter(e => +e.dataset.layer === l).map(e => +e.dataset.pos))",
        layers,
    )
    root.locator(f".iw-lens-cell[data-layer='{layers}'][data-pos='{last}']").click()
    table = root.locator("table.iw-topk")
    table.first.wait_for(state="visible")
    root.scroll_into_view_if_needed()
    shoot(nbp.page, [root, table.first], out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "screenshots")
    parser.add_argument("--notebook", type=Path, default=ROOT / "notebooks" / "quickstart.ipynb")
    parser.add_argument("--scale", type=float, default=2, help="device pixel ratio")
    parser.add_argument("--width", type=int, default=1100, help="viewport width (CSS px)")
    args = parser.parse_args()
    if not h.chromium_available():
        sys.exit(f"Chromium not found at {h.CHROMIUM}; install it or set IW_CHROMIUM.")
    from playwright.sync_api import sync_playwright

    args.out.mkdir(parents=True, exist_ok=True)
    with h.JupyterServer() as server, sync_playwright() as pw:
        browser = h.launch_browser(pw)
        try:
            page = browser.new_page(
                viewport={"width": args.width, "height": 900}, device_scale_factor=args.scale
            )
            page.set_default_timeout(60_000)
            name = server.put_notebook("quickstart.ipynb", args.notebook)
            nbp = h.NotebookPage(page, server, name).open()
            nbp.command("application:toggle-left-area")  # more room for the notebook
            nbp.run_all(timeout=300_000)
            page.wait_for_selector(".iw-root[data-view='logit_lens']")
            for theme, label in THEMES.items():
                nbp.set_theme(label)
                heatmap(nbp, args.out / f"token_heatmap-{theme}.png")
                attention(nbp, args.out / f"attention-{theme}.png")
                logit_lens(nbp, args.out / f"logit_lens-{theme}.png")
        finally:
            browser.close()


if __name__ == "__main__":
    main()
