"""The two claims of notebooks/an_neuron.ipynb, on the demo model: the neuron that `find_neurons`
ranks first for " an" against " a" fires where " an" comes next (or is predicted), and
mean-ablating it lowers P(" an") where " an" is right. (CI also runs the notebook, which prints
whether each holds.)"""

from __future__ import annotations

import pytest
import torch
from _demo_status import needs_learned

import interp_widgets as iw
from interp_widgets.analysis import ablate_neuron, find_neurons, scan_neurons
from interp_widgets.demo.tasks import article_prompts

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def an_neuron(model) -> tuple[int, int]:
    found = find_neurons(model, " an", against=" a", k=1)
    return int(found.layer[0]), int(found.neuron[0])


@pytest.fixture(scope="module")
def corpus() -> list[str]:
    return iw.demo.corpus(200, seed=1)


@pytest.fixture(scope="module")
def scan(model, an_neuron, corpus):
    return scan_neurons(model, corpus, an_neuron[0], progress=False)


@needs_learned("articles")
def test_top_contexts_are_followed_or_predicted_by_an(model, an_neuron, corpus, scan):
    top = scan.top_examples(an_neuron[1])
    run = model.run([corpus[e.doc] for e in top])
    hits = 0
    for i, e in enumerate(top):
        nxt = run.tokens[i, e.pos + 1: e.pos + 2] if e.pos + 1 < run.lengths[i] else []
        true_next = model.to_str_tokens(nxt)[0] if len(nxt) else ""
        predicted = run.top_predictions(pos=e.pos, k=1, batch=i)[0][0]
        hits += " an" in (true_next, predicted)
    assert hits / len(top) >= 0.8, f"' an' next or predicted in {hits} of {len(top)} contexts"


@needs_learned("articles")
def test_mean_ablation_lowers_p_an_where_an_is_right(model, an_neuron, scan):
    """On average over prompts that need " an"; and prompt by prompt where the neuron fires there
    (above the mean it is set to: where it is silent, ablation cannot take anything away)."""
    layer, neuron = an_neuron
    prompts = [p for p, right, _ in article_prompts(64, seed=0) if right == " an"]
    last = [len(model.to_str_tokens(p)) - 1 for p in prompts]
    r = ablate_neuron(model, prompts, layer, neuron, "mean", targets=[" an"], scan=scan)
    rows = torch.arange(len(prompts))
    clean, ablated = r.prob_clean[rows, last, 0], r.prob_ablated[rows, last, 0]
    assert ablated.mean() < clean.mean()
    hook = f"blocks.{layer}.mlp.hook_post"
    acts = model.run(prompts, names=[hook]).cache[hook][rows, last, neuron]  # at the last token
    fires = acts > r.value
    assert fires.sum() >= 5 and (ablated < clean)[fires].float().mean() > 0.5
