"""save_image: a PNG of any view, drawn by headless Chromium from the static export (no network).
Checked on the pixels: the image has the element's size and shows the heatmap's colours."""

import os

import numpy as np
import pytest
from _png import read_png

import interp_widgets as iw

CHROMIUM = os.environ.get("IW_CHROMIUM", "/usr/bin/chromium")
pytestmark = pytest.mark.skipif(not os.access(CHROMIUM, os.X_OK), reason="no Chromium here")


def test_token_heatmap_png_shows_its_colours(tmp_path):
    tokens = ["The", " cat", " sat", " on", " the", " mat"]
    view = iw.TokenHeatmap(tokens, {"x": [0.0, 1.0, 0.0, 1.0, 0.0, 1.0]}, cmap="sequential")
    path = view.save_image(tmp_path / "heatmap.png", width=800)
    img = read_png(path)[..., :3].astype(int)  # [h, w, 3]
    assert 100 < img.shape[1] <= 800 and img.shape[0] > 20
    # strongly coloured tokens: pixels far from the white background and from grey text
    r, g, b = img[..., 0], img[..., 1], img[..., 2]
    tinted = (np.abs(r - b) > 60) | (np.abs(r - g) > 60) | (np.abs(g - b) > 60)
    assert tinted.mean() > 0.01, tinted.mean()
    assert not list(tmp_path.glob(".*.tmp"))  # written atomically, nothing left behind


def test_attention_view_png_includes_its_canvases(model, tmp_path):
    view = iw.AttentionView(model, "The cat sat on the mat. The cat sat on the mat.")
    path = view.save_image(tmp_path / "attn.png")
    img = read_png(path)[..., :3].astype(int)
    blue = (img[..., 2] - img[..., 0]) > 40  # the attention hue on the thumbnails
    assert blue.mean() > 0.005, blue.mean()


def test_bad_paths_and_sizes_are_refused(tmp_path):
    view = iw.TokenHeatmap(["a"], {"x": [1.0]})
    with pytest.raises(ValueError, match="PNG"):
        view.save_image(tmp_path / "x.svg")
    with pytest.raises(ValueError, match="width must be"):
        view.save_image(tmp_path / "x.png", width=10)
