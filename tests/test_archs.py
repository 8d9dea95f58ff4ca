"""The architecture matrix (tests/archs.py): each family loaded through `iw.load_model(folder)`,
every number checked against plain PyTorch hooks on the Hugging Face module itself.

The default run checks GPT-2, Llama, Qwen2 (no BOS) and Gemma 2 (soft-capping); GPT-NeoX,
Mistral, Gemma 3 and Phi-3 run with --run-slow."""

import archs
import pytest
import torch

import interp_widgets as iw
from interp_widgets.analysis.logit_lens import single_token_id

torch.set_num_threads(1)

CLEAN = "When Mary and John went to the store, John gave a drink to"
CORRUPT = "When Mary and John went to the store, Mary gave a drink to"
ANSWER, WRONG = " Mary", " John"
#: random weights of this scale give logit differences of order 1 (the default 0.02 gives 1e-3)
INIT = 0.15


def _params():
    return [pytest.param(n, marks=() if n in archs.FAST else pytest.mark.slow)
            for n in archs.ARCHS]


@pytest.fixture(scope="module", params=_params())
def arch_model(request, tmp_path_factory):
    name = request.param
    hf, model = archs.load(name, tmp_path_factory.mktemp(name), initializer_range=INIT)
    return archs.ARCHS[name], hf, model


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    """max |a - b| relative to max |b|."""
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-12))


def test_forward_matches_hf(arch_model):
    arch, hf, model = arch_model
    L = model.cfg.n_layers
    names = [f"blocks.{i}.{h}" for i in range(L) for h in ("hook_resid_pre", "mlp.hook_post")]
    if arch.gated:
        names += [f"blocks.{i}.mlp.{h}" for i in range(L) for h in ("hook_pre", "hook_pre_linear")]
    run = model.run(CLEAN, names=names)
    ref = archs.hf_forward(arch, hf, run.tokens)
    # logits: equal up to one constant per position (TransformerLens centres the unembedding)
    diff = run.logits - ref["logits"]
    spread = (diff - diff.mean(-1, keepdim=True)).abs().max()
    assert spread / ref["logits"].abs().max() < 1e-4
    norm = model.cfg.normalization_type
    for i in range(L):
        assert _rel(archs.centred(run.cache[f"blocks.{i}.hook_resid_pre"], norm),
                    archs.centred(ref["resid_pre"][i], norm)) < 1e-4, i
        assert _rel(run.cache[f"blocks.{i}.mlp.hook_post"], ref["mlp_post"][i]) < 1e-4, i
        if arch.gated:  # the gate pre-activation is hook_pre, the up projection hook_pre_linear
            assert _rel(run.cache[f"blocks.{i}.mlp.hook_pre"], ref["gate"][i]) < 1e-4, i
            assert _rel(run.cache[f"blocks.{i}.mlp.hook_pre_linear"], ref["up"][i]) < 1e-4, i


def test_bos_follows_the_model(arch_model):
    arch, _, model = arch_model
    ids = model.tokenizer(CLEAN, add_special_tokens=False)["input_ids"]
    tokens = model.to_tokens(CLEAN)[0].tolist()
    if arch.bos and model.cfg.default_prepend_bos:
        assert model.bos == model.tokenizer.bos_token_id
        assert tokens == [model.bos] + ids
    else:
        assert model.bos is None
        assert tokens == ids
    assert model.to_tokens(CLEAN, prepend_bos=False)[0].tolist() == ids
    forced = model.run(CLEAN, prepend_bos=True).tokens[0].tolist()
    assert forced == [model.tokenizer.bos_token_id] + ids


def _logit_diff(model, logits: torch.Tensor) -> torch.Tensor:
    a, w = single_token_id(model, ANSWER), single_token_id(model, WRONG)
    return logits[:, -1, a] - logits[:, -1, w]


def test_patching_equals_hand_hooks(arch_model):
    arch, hf, model = arch_model
    result = iw.activation_patching(model, CLEAN, CORRUPT, iw.logit_diff(ANSWER, WRONG),
                                    component="resid_pre", normalize=False)
    clean, corrupt = model.to_tokens(CLEAN), model.to_tokens(CORRUPT)
    donor = archs.hf_forward(arch, hf, clean)["resid_pre"]
    L, n = model.cfg.n_layers, clean.shape[1]
    expected = torch.zeros(L, n)
    for layer in range(L):
        for p in range(n):
            def put(h, layer=layer, p=p):
                h = h.clone()
                h[:, p] = donor[layer][:, p]
                return h

            out = archs.hf_forward(arch, hf, corrupt, patch={layer: put})
            expected[layer, p] = _logit_diff(model, out["logits"])[0]
    assert result.values.shape == (L, n)
    assert _rel(result.values, expected) < 1e-4
    assert expected.abs().max() > 0.05  # the prompts differ enough for the check to mean something


def test_dla_sums_to_the_logit_difference(arch_model):
    arch, hf, model = arch_model
    dla = iw.direct_logit_attribution(model, CLEAN, ANSWER, WRONG)
    ref = float(_logit_diff(model, archs.hf_forward(arch, hf, model.to_tokens(CLEAN))["logits"]))
    assert dla.logit_diff == pytest.approx(ref, rel=1e-4, abs=1e-5)
    if not getattr(model.cfg, "output_logits_soft_cap", 0):
        # components are linear in the residual; soft-capping (Gemma 2) is not, so there the
        # parts sum to the capped logit difference only to first order
        assert dla.total == pytest.approx(ref, rel=1e-3, abs=1e-4)


def test_logit_lens_equals_final_norm_and_unembed(arch_model):
    arch, hf, model = arch_model
    tokens = model.to_tokens(CLEAN)
    lens = iw.logit_lens(model, CLEAN, target=ANSWER)
    ref = archs.hf_forward(arch, hf, tokens)
    probs = ref["logits"][0].float().softmax(-1)  # [pos, vocab]
    L = model.cfg.n_layers
    # the last row (after the last layer) is the model's own prediction
    assert _rel(lens.target_prob[L], probs[:, single_token_id(model, ANSWER)]) < 1e-4
    assert torch.equal(lens.top_ids[L, :, 0], probs.argmax(-1))
    # earlier rows: the HF final norm and unembedding applied to the HF residual stream
    for layer in range(L):
        logits = archs.hf_unembed(arch, hf, ref["resid_pre"][layer])[0]
        p = logits.float().softmax(-1)[:, single_token_id(model, ANSWER)]
        assert _rel(lens.target_prob[layer], p) < 1e-4, layer


def test_scan_equals_brute_force(arch_model):
    arch, hf, model = arch_model
    corpus = iw.demo.corpus(12, seed=3)
    layer = model.cfg.n_layers - 1
    scan = iw.scan_neurons(model, corpus, layer, k=5, batch_size=5, progress=False)
    values = []
    for doc in corpus:
        ids = model.tokenizer(doc, add_special_tokens=False)["input_ids"]
        row = ([] if model.bos is None else [model.bos]) + ids
        post = archs.hf_forward(arch, hf, torch.tensor([row]))["mlp_post"][layer][0]
        values.append(post[int(model.bos is not None):])  # a BOS is not a scanned position
    acts = torch.cat(values)  # [tokens, d_mlp]
    assert scan.n_tokens == acts.shape[0]
    top = acts.topk(5, dim=0).values.T  # [d_mlp, 5]
    got = torch.stack([scan.top_values(n) for n in range(acts.shape[1])])
    assert _rel(got, top) < 1e-4
    assert torch.allclose(scan.mean.float(), acts.double().mean(0).float(), atol=1e-5)


# ---- a model trained without BOS (Qwen2): nothing puts one first unless asked -------------------


@pytest.fixture(scope="module")
def qwen(tmp_path_factory):
    hf, model = archs.load("qwen2", tmp_path_factory.mktemp("qwen2"), initializer_range=INIT)
    return hf, model


def test_no_bos_model_every_entry_point(qwen, tmp_path):
    hf, model = qwen
    assert model.bos is None and model.cfg.default_prepend_bos is False
    ids = model.tokenizer(CLEAN, add_special_tokens=False)["input_ids"]
    n = len(ids)
    assert model.run(CLEAN).tokens[0].tolist() == ids
    assert model.run(CLEAN, prepend_bos=True).tokens.shape[1] == n + 1
    assert len(iw.logit_lens(model, CLEAN).str_tokens) == n
    assert len(iw.logit_lens(model, CLEAN, prepend_bos=True).str_tokens) == n + 1
    dla = iw.direct_logit_attribution(model, CLEAN, ANSWER, WRONG)
    assert len(dla.str_tokens) == n
    hf_diff = float(_logit_diff(model, hf(torch.tensor([ids])).logits.detach()))
    assert dla.logit_diff == pytest.approx(hf_diff, rel=1e-4, abs=1e-5)
    patch = iw.activation_patching(model, CLEAN, CORRUPT, iw.logit_diff(ANSWER, WRONG))
    assert patch.values.shape == (model.cfg.n_layers, n)
    assert iw.activation_patching(model, CLEAN, CORRUPT, iw.logit_diff(ANSWER, WRONG),
                                  prepend_bos=True).values.shape == (model.cfg.n_layers, n + 1)
    gen = iw.generate(model, CLEAN, max_new_tokens=3, temperature=0)
    assert gen.n_prompt == n and gen.tokens[:n].tolist() == ids
    # greedy continuation equals the HF model's own greedy steps on the same ids
    row = list(ids)
    for _ in range(3):
        row.append(int(hf(torch.tensor([row])).logits[0, -1].argmax()))
    assert gen.tokens.tolist() == row
    vec = iw.steering_vector(model, "Love", "Hate", 1)
    love = model.tokenizer("Love", add_special_tokens=False)["input_ids"]
    hate = model.tokenizer("Hate", add_special_tokens=False)["input_ids"]
    assert vec.vector.shape[0] == max(len(love), len(hate))  # no BOS row
    effect = iw.steering_effect(model, [CLEAN], iw.logit_diff(ANSWER, WRONG))
    assert float(effect[0]) == pytest.approx(hf_diff, rel=1e-4, abs=1e-5)
    view = iw.LogitLens(model, CLEAN)
    assert len(view.tokens) == n
    view.to_html(tmp_path / "lens.html")
    assert (tmp_path / "lens.html").stat().st_size > 0
    # integrated gradients: with no BOS, the first token is an input like any other
    ig = iw.input_attribution(model, CLEAN, ANSWER, WRONG, method="occlusion")
    assert ig.values.shape == (n,) and float(ig.values[0]) != 0.0


def test_no_bos_scan_counts_every_token(qwen):
    _, model = qwen
    corpus = iw.demo.corpus(6, seed=1)
    n_tokens = sum(len(model.tokenizer(d, add_special_tokens=False)["input_ids"])
                   for d in corpus)
    scan = iw.scan_neurons(model, corpus, 0, k=3, batch_size=4, progress=False)
    assert scan.n_tokens == n_tokens  # no position is dropped as if it were a BOS
    with_bos = iw.scan_neurons(model, corpus, 0, k=3, batch_size=4, progress=False,
                               prepend_bos=True)
    assert with_bos.n_tokens == n_tokens
    ex = with_bos.top_examples(0)[0]
    assert ex.pos >= 1


def test_neuron_input_attribution_sums_to_each_pre_activation(arch_model):
    arch, hf, model = arch_model
    layer, neuron = model.cfg.n_layers - 1, 7
    tokens = model.to_tokens(CLEAN)
    ref = archs.hf_forward(arch, hf, tokens)
    kinds = iw.pre_activations(model)
    assert set(kinds) == ({"mlp.hook_pre", "mlp.hook_pre_linear"} if arch.gated
                          else {"mlp.hook_pre"})
    for pre in kinds:
        res = iw.neuron_input_attribution(model, CLEAN, layer, neuron, pos=-1, pre=pre)
        if arch.gated:  # the HF module's own gate_proj / up_proj output
            want = ref["gate" if pre == "mlp.hook_pre" else "up"][layer][0, -1, neuron]
        else:
            run = model.run(CLEAN, names=[f"blocks.{layer}.{pre}"])
            want = run.cache[f"blocks.{layer}.{pre}"][0, -1, neuron]
        assert res.pre_activation == pytest.approx(float(want), rel=1e-4, abs=1e-5)
        assert res.total == pytest.approx(float(want), rel=1e-3, abs=1e-4), pre
        assert res.hook == f"blocks.{layer}.{pre}" and res.kind == kinds[pre]
        rotary = model.cfg.positional_embedding_type == "rotary"
        assert ("pos_embed" in res.labels) is not rotary
        parallel = bool(getattr(model.cfg, "parallel_attn_mlp", False))
        assert (f"L{layer}H0" in res.labels) is not parallel
        assert f"{layer}_mlp_out" not in res.labels and f"L{layer - 1}H0" in res.labels


def test_integrated_gradients_complete_within_one_percent(arch_model):
    arch, hf, model = arch_model
    ig = iw.input_attribution(model, CLEAN, ANSWER, WRONG)  # pad baseline, adaptive steps
    ref = float(_logit_diff(model, archs.hf_forward(arch, hf, model.to_tokens(CLEAN))["logits"]))
    assert ig.target_value == pytest.approx(ref, rel=1e-4, abs=1e-5)
    assert ig.relative_gap < 0.01, (ig.completeness_gap, ig.steps)
    assert float(ig.values.sum()) == pytest.approx(
        ig.target_value - ig.baseline_value - ig.completeness_gap, abs=1e-4)
    assert bool(ig.values[0] == 0) is model.starts_with_bos(model.to_tokens(CLEAN))


def test_perturbation_flow_positions_follow_the_positional_scheme(arch_model):
    arch, hf, model = arch_model
    text = "When Mary and John went to the store. It was late. John gave a drink to"
    cut = "It was late. "
    flow = iw.perturbation_flow(model, text, cut)
    rotary = model.cfg.positional_embedding_type == "rotary"
    assert flow.kept_positions is not rotary
    full, edited = model.to_tokens(text), model.to_tokens(text.replace(cut, ""))
    ref_full = archs.hf_forward(arch, hf, full)["resid_pre"]
    if rotary:
        ref_edit = archs.hf_forward(arch, hf, edited)["resid_pre"]
    else:  # the edited tokens at their old positions: a shared prefix, then the shared suffix
        f, e = full[0].tolist(), edited[0].tolist()
        p = next(i for i, (x, y) in enumerate(zip(f, e)) if x != y)
        assert e[p:] == f[len(f) - (len(e) - p):]  # the cut removes whole tokens here
        pos = torch.tensor([list(range(p)) + list(range(len(f) - (len(e) - p), len(f)))])
        with torch.no_grad():
            hf_out = hf(edited, position_ids=pos, output_hidden_states=True)
        ref_edit = list(hf_out.hidden_states[:-1])
    norm = model.cfg.normalization_type
    # the last token is shared; its change at each layer matches the HF module's
    for layer in range(model.cfg.n_layers):
        d = (archs.centred(ref_full[layer][0, -1], norm)
             - archs.centred(ref_edit[layer][0, -1], norm)).norm()
        assert float(flow.diff[layer, -1]) == pytest.approx(float(d), rel=1e-3, abs=1e-5)


def test_actadd_of_unequal_lengths_is_padded_or_refused_and_sized(arch_model):
    arch, hf, model = arch_model
    layer = model.cfg.n_layers - 1
    with pytest.raises(ValueError, match="different lengths"):
        iw.steering_vector(model, "Happy", "Sad", layer, align="refuse")
    with pytest.warns(UserWarning, match="padded with 1 space token"):
        vec = iw.steering_vector(model, "Happy", "Sad", layer)  # 3 tokens vs 2: "Sad" padded
    assert vec.padded == -1 and vec.vector.shape[0] == len(model.to_tokens("Happy")[0])
    # the vector and its size against the stream, from the HF module's own layer input
    rows = [model.to_tokens("Happy")[0].tolist(), model.to_tokens("Sad")[0].tolist()]
    space = model.tokenizer(" ", add_special_tokens=False)["input_ids"]
    rows[1] += space * (len(rows[0]) - len(rows[1]))
    resid = archs.hf_forward(arch, hf, torch.tensor(rows))["resid_pre"][layer]  # [2, n, d]
    norm = model.cfg.normalization_type
    resid = archs.centred(resid, norm)
    assert _rel(archs.centred(vec.vector, norm), resid[0] - resid[1]) < 1e-4
    text = ~model.bos_mask(torch.tensor(rows))
    want = (resid[0] - resid[1]).norm(dim=-1)[text.all(0)].mean() / resid.norm(dim=-1)[text].mean()
    if not str(norm).startswith("LN"):  # LayerNorm models' stream is centred by TL: sizes differ
        assert vec.relative_norm == pytest.approx(float(want), rel=1e-4)
    assert vec.relative_norm > 0


def test_neuron_view_and_interventions_read_the_real_output(arch_model, tmp_path):
    arch, hf, model = arch_model
    layer, neuron = model.cfg.n_layers - 1, 5
    view = iw.NeuronView(model, layer, neuron, text=CLEAN, progress=False)
    got = view.call("attribution", {"pos": 3})
    assert got["kind"] == iw.pre_activations(model)["mlp.hook_pre"]
    view.to_html(tmp_path / "neuron.html")
    assert (tmp_path / "neuron.html").stat().st_size > 0
    # zero-ablating the neuron at hook_post equals zeroing that input column of the HF down
    # projection (the neuron's real output) at every position
    res = iw.ablate_neuron(model, CLEAN, layer, neuron, "zero", targets=[ANSWER])
    down = arch.down(arch.layers(hf)[layer])

    def zero(mod, args):
        x = args[0].clone()
        x[..., neuron] = 0
        return (x,)

    handle = down.register_forward_pre_hook(zero)
    try:
        with torch.no_grad():
            logits = hf(model.to_tokens(CLEAN)).logits
    finally:
        handle.remove()
    probs = logits[0].float().softmax(-1)[:, single_token_id(model, ANSWER)]
    assert _rel(res.prob_ablated[0, :, 0], probs) < 1e-4
