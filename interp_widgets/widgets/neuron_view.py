"""NeuronView: one MLP neuron's dashboard (js/src/widgets/neuron_view.ts). Numbers come from
`analysis.corpus` (scan) and `analysis.neurons` (effects, attribution, interventions).

Synced up front (small): the neuron's statistics, histogram, logit-effect tables, correlated
neurons and the current text's activations. Fetched on demand: corpus examples, the input
attribution of one position, and ablation / modulation results for the chosen tokens."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import torch
import traitlets as t

from ..analysis import neurons as nr
from ..analysis._checks import check_layer, check_neuron, mlp_hook
from ..analysis.corpus import Example, NeuronScan, scan_neurons
from ..analysis.logit_lens import single_token_id
from ._base import BaseWidget, check_index, check_prompt, request_handler
from ._codec import encode_array
from .explain import ExplainMixin

#: the modulation slider's stops (static exports answer exactly these)
SCALES = [x / 2 for x in range(int(nr.SCALE_RANGE[0] * 2), int(nr.SCALE_RANGE[1] * 2) + 1)]


def _example(e: Example) -> dict[str, Any]:
    return {"doc": e.doc, "pos": e.pos, "value": e.value, "tokens": e.tokens,
            "acts": encode_array(torch.tensor(e.acts), "float32"), "center": e.center}


class NeuronView(ExplainMixin, BaseWidget):
    """Dashboard of neuron `neuron` of MLP `layer`: its activation over a text box (re-run as you
    type), its top corpus examples and activation-bucket samples, histogram, direct logit effect,
    correlated neurons (click to go there), ablation / modulation of the next-token probabilities
    of chosen `targets`, and the input attribution of a clicked token.

    corpus: documents to scan (every neuron of a layer at once, when that layer is first shown);
    scan: a `NeuronScan` of `layer` to use instead. Without either, the corpus panels are empty
    and only zero ablation is offered."""

    _view = t.Unicode("neuron_view").tag(sync=True)
    layer = t.Int(0).tag(sync=True)
    neuron = t.Int(0).tag(sync=True)
    n_layers = t.Int(1).tag(sync=True)
    n_neurons = t.Int(1).tag(sync=True)
    hook = t.Unicode("").tag(sync=True)
    text = t.Unicode("").tag(sync=True)
    text_tokens = t.List(t.Unicode()).tag(sync=True)
    text_acts = t.Dict().tag(sync=True)  # float32 [pos]
    stats = t.Dict().tag(sync=True)  # {} without a scan
    histogram = t.Dict(None, allow_none=True).tag(sync=True)  # {"counts", "edges"} float32
    logit_effect = t.Dict().tag(sync=True)  # {"top": [[token, effect]], "bottom": [...]}
    correlated = t.List(t.List()).tag(sync=True)  # [[neuron, correlation], ...]
    targets = t.List(t.Unicode()).tag(sync=True)
    modes = t.List(t.Unicode()).tag(sync=True)
    scales = t.List(t.Float()).tag(sync=True)
    can_rerun = t.Bool(True).tag(sync=True)

    def __init__(self, model: Any, layer: int, neuron: int, *, corpus: Iterable | None = None,
                 scan: NeuronScan | None = None, text: str | None = None,
                 targets: Sequence[str] = (" an", " a"), hook: str = "mlp.hook_post", k: int = 10,
                 progress: bool = True) -> None:
        self._model, self._k, self._progress = model, k, progress
        self._corpus = list(corpus) if corpus is not None else None
        self._scans: dict[int, NeuronScan] = {}
        self._short_hook = hook
        if scan is not None:
            if not isinstance(scan, NeuronScan):
                raise ValueError(f"scan must be a NeuronScan, got {type(scan).__name__}")
            self._scans[scan.layer] = scan
        super().__init__(n_layers=model.cfg.n_layers, n_neurons=int(model.cfg.d_mlp),
                         scales=SCALES)
        self._set_targets(list(targets))
        self._select(layer, neuron, text)

    # -- state ----------------------------------------------------------------------------------
    def _scan(self) -> NeuronScan | None:
        """The scan of the current layer (scanning the corpus for it the first time)."""
        if self.layer not in self._scans and self._corpus is not None:
            self._scans[self.layer] = scan_neurons(self._model, self._corpus, self.layer,
                                                   hook=self._short_hook, k=max(self._k, 20),
                                                   progress=self._progress)
        scan = self._scans.get(self.layer)
        if scan is not None and scan.hook != self.hook:
            raise ValueError(f"the scan is of {scan.hook}, but this view reads {self.hook}")
        return scan

    def _select(self, layer: int, neuron: int, text: str | None = None) -> None:
        model = self._model
        check_layer(model, layer)
        check_neuron(neuron, int(model.cfg.d_mlp))
        hook = mlp_hook(model, layer, self._short_hook)
        self.layer, self.hook = layer, hook  # before _scan: it scans this layer
        scan = self._scan()
        effect = self._effect = nr.direct_logit_effect(model, layer, neuron, k=self._k)
        with self.hold_sync():
            self.neuron = neuron
            self.logit_effect = {
                "top": [[r.token, r.effect] for r in effect.top.itertuples()],
                "bottom": [[r.token, r.effect] for r in effect.bottom.itertuples()],
            }
            self.stats, self.histogram, self.correlated = self._corpus_panels(scan, neuron)
            self.modes = ["zero", "mean", "resample"] if scan is not None else ["zero"]
            if text is None and not self.text:
                top = scan.top_examples(neuron) if scan is not None else []
                text = "".join(top[0].tokens) if top else "The chef looked at the apple and"
            self._set_text(text if text is not None else self.text)
            self._rev += 1

    def _corpus_panels(self, scan: NeuronScan | None, n: int) -> tuple[dict, dict | None, list]:
        if scan is None:
            return {}, None, []
        counts, edges = scan.histogram(n)
        nz = counts.nonzero()
        lo, hi = (int(nz.min()), int(nz.max()) + 1) if len(nz) else (0, 1)
        top = scan.top_values(n)
        stats = {"mean": float(scan.mean[n]), "std": float(scan.std[n]),
                 "density": float(scan.density[n]), "max": float(top[0]) if len(top) else 0.0,
                 "n_tokens": scan.n_tokens, "n_docs": scan.n_docs, "partial": scan.partial}
        hist = {"counts": encode_array(counts[lo:hi].float(), "float32"),
                "edges": encode_array(edges[lo: hi + 1].float(), "float32")}
        corr = []
        if scan._xtx is not None:
            df = nr.correlated_neurons(scan, n, self._k)
            corr = [[int(a), float(b)] for a, b in zip(df["neuron"], df["correlation"])]
        return stats, hist, corr

    def _set_text(self, text: str) -> None:
        tokens, acts = nr.neuron_activations(self._model, check_prompt(text), self.layer,
                                             self.neuron, hook=self.hook)
        self.text, self.text_tokens = text, list(tokens)
        self._text_acts = acts
        self.text_acts = encode_array(acts, "float32")

    def _set_targets(self, targets: list[str]) -> None:
        for tok in targets:
            single_token_id(self._model, tok)  # raises, naming the pieces, if not one token
        self.targets = targets

    # -- auto-interp (widgets/explain.py: the Explain panel) ---------------------------------
    def explain_key(self) -> tuple[str, str, int]:
        return self._model.name, self.hook, self.neuron

    def explain_records(self):
        from ..autointerp import records_from_scan

        scan = self._scan()
        if scan is None:
            raise ValueError("no corpus scan to explain from: pass corpus= or scan= to NeuronView")
        return records_from_scan(scan, self.neuron)

    # -- requests -------------------------------------------------------------------------------
    @request_handler("select")
    def _select_request(self, layer: int, neuron: int) -> dict[str, Any]:
        """Show another neuron (and layer); everything synced is recomputed."""
        check_index("layer", layer, self.n_layers)
        check_index("neuron", neuron, self.n_neurons)
        self._select(layer, neuron)
        return {}

    @request_handler("set_text")
    def _set_text_request(self, text: str) -> dict[str, Any]:
        """Re-run the current text box."""
        with self.hold_sync():
            self._set_text(text)
            self._rev += 1
        return {}

    @request_handler("set_targets")
    def _set_targets_request(self, targets: str) -> dict[str, Any]:
        """Comma-separated tokens, spaces kept (" an, a" -> [" an", " a"])."""
        parts = [p for p in targets.split(",") if p]
        if not parts:
            raise ValueError("give at least one target token, e.g. ' an, a'")
        self._set_targets(parts)
        return {}

    @request_handler("examples")
    def _examples(self) -> dict[str, Any]:
        """The current neuron's top examples and bucket samples (empty lists without a scan)."""
        scan = self._scan()
        if scan is None:
            return {"top": [], "buckets": []}
        n = self.neuron
        return {
            "top": [_example(e) for e in scan.top_examples(n)[: self._k]],
            "buckets": [{"lo": b.lo, "hi": b.hi, "q_lo": b.q_lo, "q_hi": b.q_hi,
                         "count": b.count, "examples": [_example(e) for e in b.examples]}
                        for b in scan.bucket_examples(n)],
        }

    @request_handler("attribution")
    def _attribution(self, pos: int) -> dict[str, Any]:
        """What drives the neuron at `pos` of the text: the parts of its pre-activation (the
        gate's, x @ W_gate, on a gated MLP; `kind` says which) and gradient x input."""
        check_index("pos", pos, len(self.text_tokens))
        a = nr.neuron_input_attribution(self._model, self.text, self.layer, self.neuron, pos=pos)
        return {"pos": pos, "labels": a.labels, "pre": a.pre_activation, "kind": a.kind,
                "contributions": encode_array(a.contributions, "float32"),
                "grad_x_input": encode_array(a.grad_x_input, "float32")}

    @request_handler("ablate")
    def _ablate(self, mode: str) -> dict[str, Any]:
        """P(target) after the text, clean and with the neuron ablated; mean loss change."""
        if mode not in self.modes:
            raise ValueError(f"ablation mode {mode!r} is not available here; use one of "
                             f"{self.modes} (mean and resample need a corpus or scan)")
        r = nr.ablate_neuron(self._model, self.text, self.layer, self.neuron, mode,
                             targets=self.targets, scan=self._scan(), hook=self.hook)
        return {"mode": mode, "targets": r.targets,
                "clean": encode_array(r.prob_clean[0, -1], "float32"),
                "ablated": encode_array(r.prob_ablated[0, -1], "float32"),
                "d_loss": float(r.d_loss[0].nanmean())}

    @request_handler("modulate")
    def _modulate(self, scale: float) -> dict[str, Any]:
        """P(target) after the text with the activation scaled; top 5 next tokens."""
        r = nr.modulate_neuron(self._model, self.text, self.layer, self.neuron, float(scale),
                               hook=self.hook)
        ids = [single_token_id(self._model, tok) for tok in self.targets]
        top = r.top(0, 5)
        return {"scale": float(scale), "targets": list(self.targets),
                "probs": encode_array(r.probs[0, ids], "float32"),
                "baseline": encode_array(r.baseline[ids], "float32"),
                "top": {"tokens": [s for s, _ in top],
                        "probs": encode_array(torch.tensor([p for _, p in top]), "float32")}}

    def static_answers(self) -> Iterator[tuple[str, dict[str, Any], Any]]:
        yield "examples", {}, self._examples()
        for pos in range(len(self.text_tokens)):
            yield "attribution", {"pos": pos}, self._attribution(pos)
        for mode in self.modes:
            yield "ablate", {"mode": mode}, self._ablate(mode)
        for scale in self.scales:  # as JSON.stringify writes them: 1, not 1.0
            key = int(scale) if float(scale).is_integer() else scale
            yield "modulate", {"scale": key}, self._modulate(scale)

    @property
    def data(self) -> dict[str, Any]:
        """The numbers shown: {"layer", "neuron", "text_tokens", "text_acts" Tensor[pos],
        "logit_effect" (analysis.neurons.LogitEffect), "scan" (a UnitScan or None)}: the
        results computed when they were shown, not a re-run of the model."""
        return {"layer": self.layer, "neuron": self.neuron, "text_tokens": list(self.text_tokens),
                "text_acts": self._text_acts, "logit_effect": self._effect,
                "scan": self._scans.get(self.layer)}
