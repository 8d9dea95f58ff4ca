"""The investigator: behaviours, verifying interventions checked against independent references,
the offline plan against the known answers of the demo model, the LLM loop over real HTTP,
resuming, reports, and the unit census."""

from __future__ import annotations

import json

import pytest
import torch
from tool_server import ScriptedToolServer

import interp_widgets as iw
from interp_widgets.analysis import activation_patching
from interp_widgets.investigate import (
    Behaviour,
    Budget,
    Investigation,
    ToolError,
    Unit,
    investigate,
    unit_effect,
)
from interp_widgets.investigate.cases import CASES, run_case, score_investigation
from interp_widgets.investigate.tools import TOOLS, Context, call_tool

KEY = "sk-test-secret-key-123456"


@pytest.fixture(scope="module")
def induction(model):
    return Behaviour.induction(model, n=16)


@pytest.fixture(scope="module")
def induction_inv(model, induction):
    return investigate(model, induction)


# ---- behaviours --------------------------------------------------------------------------------


def test_ready_behaviours_are_what_their_names_say(model):
    ind = Behaviour.induction(model, n=4, span=6)
    for p, c, a in zip(ind.prompts, ind.corrupt, ind.answer):
        body = p[1:]  # after BOS: A (6 tokens) then A[:5]
        assert torch.equal(body[:5], body[6:11]) and int(body[5]) == a
        assert torch.equal(p[7:], c[7:]) and not torch.equal(p[1:7], c[1:7])
    ioi = Behaviour.ioi(model, n=6)
    for p, c, io, s in zip(ioi.prompts, ioi.corrupt, ioi.answer, ioi.wrong):
        clean_t, corrupt_t = model.to_tokens(p)[0], model.to_tokens(c)[0]
        assert len(clean_t) == len(corrupt_t) and (clean_t != corrupt_t).sum() == 1
        assert p.index(s.strip()) < p.index(io.strip())  # subject first
    art = Behaviour.article(model, n=4)
    assert art.corrupt is None and set(art.answer) == {" a", " an"}
    # the demo model does all three
    for b in (ind, ioi, art):
        assert b.check(model)["mean"] > 0


def test_bad_behaviours_say_what_is_wrong(model):
    with pytest.raises(ValueError, match="at least one prompt"):
        Behaviour([], [], [])
    with pytest.raises(ValueError, match="3 tokens for 2 prompts"):
        Behaviour(["a b", "c d"], [" x", " y", " z"], " w")
    with pytest.raises(ValueError, match="corrupted twin"):
        Behaviour(["a b"], " x", " y", corrupt=["a", "b"])
    b = Behaviour(["When Mary and John went out, John gave it to"], " Mary", " John",
                  corrupt=["When Mary and John went out, Mary Smith gave it to"])
    with pytest.raises(ValueError, match="line up token by token"):
        b.groups(model)
    with pytest.raises(ValueError, match="Unknown task 'nope'"):
        Behaviour.from_task(model, "nope")


def test_a_behaviour_the_model_fails_is_said_so_with_numbers(model):
    ioi = Behaviour.ioi(model, n=8)
    flipped = Behaviour(ioi.prompts, ioi.wrong, ioi.answer, ioi.corrupt, name="flipped")
    with pytest.raises(ValueError, match=r"fails this behaviour: mean metric -\d+\.\d+ over 8"):
        investigate(model, flipped)
    # one prompt the model gets "right" under the flipped metric: only_correct goes on with it
    mixed = Behaviour(ioi.prompts[:3], [ioi.wrong[0], ioi.wrong[1], ioi.answer[2]],
                      [ioi.answer[0], ioi.answer[1], ioi.wrong[2]], ioi.corrupt[:3])
    with pytest.warns(UserWarning, match="Going on with the 1 prompts"):
        inv = investigate(model, mixed, only_correct=True, budget=Budget(max_calls=1))
    assert len(inv.behaviour) == 1


# ---- interventions against independent references ---------------------------------------------


def test_corrupt_knockout_of_a_head_equals_noising_by_activation_patching(model, induction):
    """Knocking L2H2 out with its corrupt value is activation patching run the other way
    (corrupt into clean); `activation_patching` is itself checked against TransformerLens."""
    e = unit_effect(model, induction, Unit("head", 2, 2))
    clean = torch.stack(induction.tokens(model))
    corrupt = torch.stack(induction.tokens(model, "corrupt"))
    noised = activation_patching(model, corrupt, clean, induction.metric(), component="head_out",
                                 positions="all", normalize=False)
    assert float(e.knocked_out.mean()) == pytest.approx(float(noised.values[2, 2]), abs=1e-4)
    assert float(e.clean.mean()) == pytest.approx(noised.corrupt_value, abs=1e-4)


def test_zero_knockout_of_a_neuron_matches_a_plain_hook_on_the_hf_model(model):
    """The same knock-out written as a forward hook on the Hugging Face GPT-2 module."""
    from transformers import GPT2LMHeadModel

    from interp_widgets.demo import MODEL_DIR

    b = Behaviour.article(model, n=6)
    e = unit_effect(model, b, Unit("neuron", 1, 322), mode="zero")
    hf = GPT2LMHeadModel.from_pretrained(MODEL_DIR).eval()

    def zero(module, inputs, output):
        output = output.clone()
        output[..., 322] = 0
        return output

    want = []
    for i, toks in enumerate(b.tokens(model)):
        a, w = (model.tokenizer.encode(t, add_special_tokens=False)[0]
                for t in (b.answer[i], b.wrong[i]))
        handle = hf.transformer.h[1].mlp.act.register_forward_hook(zero)
        with torch.no_grad():
            logits = hf(toks[None]).logits[0, -1]
        handle.remove()
        want.append(float(logits[a] - logits[w]))
    assert e.knocked_out.tolist() == pytest.approx(want, abs=1e-3)


def test_mean_ablation_is_the_prompt_mean_and_the_interval_is_over_prompts(model):
    b = Behaviour.article(model, n=8)
    e = unit_effect(model, b, Unit("component", 1, component="mlp_out"))
    assert e.mode == "mean" and e.estimate.n == 8
    assert e.effect == pytest.approx(float(e.per_prompt.mean()), abs=1e-6)
    assert e.estimate.low <= e.effect <= e.estimate.high


def test_bad_units_are_refused_with_the_valid_range(model, induction):
    with pytest.raises(ValueError, match="layers 0 .. 2"):
        unit_effect(model, induction, Unit("head", 7, 0))
    with pytest.raises(ValueError, match="0 .. 3"):
        unit_effect(model, induction, Unit("head", 1, 9))
    with pytest.raises(ValueError, match="needs the SAE"):
        unit_effect(model, induction, Unit("feature", 1, 3))
    with pytest.raises(ValueError, match="needs corrupt prompts"):
        unit_effect(model, Behaviour.article(model, n=2), Unit("head", 1, 0), mode="corrupt")


# ---- tools --------------------------------------------------------------------------------------


def test_only_listed_tools_run_and_bad_calls_come_back_readable(model, induction):
    ctx = Context(model, induction)
    with pytest.raises(ToolError, match="Unknown tool 'exec'; the tools are: check_behaviour"):
        call_tool(ctx, "exec", {"code": "import os"})
    with pytest.raises(ToolError, match="needs the arguments \\['kind', 'layer'\\]"):
        call_tool(ctx, "ablate", {})
    with pytest.raises(ToolError, match="takes no argument \\['bogus'\\]"):
        call_tool(ctx, "patch_heads", {"bogus": 1})
    with pytest.raises(ToolError, match="must be an integer"):
        call_tool(ctx, "ablate", {"kind": "head", "layer": "two"})
    with pytest.raises(ToolError, match="layers 0 .. 2"):
        call_tool(ctx, "ablate", {"kind": "head", "layer": 5, "index": 0})


# ---- the offline plan -------------------------------------------------------------------------


def test_offline_plan_finds_the_induction_circuit_and_verifies_every_claim(induction_inv):
    inv = induction_inv
    case = next(c for c in CASES if c.name == "induction")
    score = score_investigation(inv, case)
    assert score["recall"] == 1.0 and score["precision"] == 1.0, score
    claims = inv.claims
    assert set(claims.columns) >= {"kind", "layer", "index", "position", "effect", "spread",
                                   "verified", "statement", "evidence"}
    for c in inv.claims_list:
        assert all(0 <= s < len(inv.steps) for s in c.evidence)
        assert inv.step(max(c.evidence)).tool == "ablate"
        if c.verified:
            assert c.effect > 2 * c.spread
    typed = claims[claims.statement.str.contains("induction head")]
    assert {(r.layer, r.index) for r in typed.itertuples()} >= {(2, 0), (2, 2), (2, 3)}


def test_ioi_case_recall_and_a_refuted_claim_is_kept(model):
    case = next(c for c in CASES if c.name == "ioi")
    inv, row = run_case(model, case)
    assert row["recall"] == 1.0 and row["precision"] >= 0.8, row
    refuted = [c for c in inv.claims_list if not c.verified]
    assert refuted and all("refuted" in c.statement for c in refuted)


# ---- files, resuming, reports -------------------------------------------------------------------


def test_save_load_round_trip_is_strict_json(induction_inv, tmp_path):
    path = induction_inv.save(tmp_path / "inv.json")
    json.loads(path.read_text(), parse_constant=lambda c: pytest.fail(f"non-JSON {c}"))
    back = Investigation.load(path)
    assert back.claims.drop(columns=["low", "high", "fraction"]).equals(
        induction_inv.claims.drop(columns=["low", "high", "fraction"]))
    assert [s.tool for s in back.steps] == [s.tool for s in induction_inv.steps]
    (tmp_path / "bad.json").write_text('{"format": "interp_widgets.investigation", "version": 9}')
    with pytest.raises(ValueError, match="version 9 is unknown"):
        Investigation.load(tmp_path / "bad.json")


def test_an_interrupted_investigation_resumes_to_the_same_claims(model, induction,
                                                                 induction_inv, tmp_path):
    path = tmp_path / "inv.json"

    def boom(step):
        if step.id == 4:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        investigate(model, induction, path=path, on_step=boom)
    assert len(Investigation.load(path).steps) == 5  # steps 0..4 kept
    short = investigate(model, induction, path=path, budget=Budget(max_calls=7))
    assert short.stopped == "the budget of 7 tool calls is used up" and len(short.steps) == 7
    done = investigate(model, induction, path=path)
    assert done.stopped is None
    assert done.claims.equals(induction_inv.claims)
    with pytest.raises(ValueError, match="another model or behaviour"):
        investigate(model, Behaviour.induction(model, n=16, seed=5), path=path)


def test_report_notebook_reruns_every_claim_and_html_is_static(induction_inv, tmp_path):
    import nbformat
    from nbclient import NotebookClient

    nb_path = induction_inv.report(tmp_path / "report.ipynb")
    nb = nbformat.read(nb_path, as_version=4)
    checks = [c for c in nb.cells if c.cell_type == "code" and "unit_effect(" in c.source]
    assert len(checks) == sum(c.what == "carries" for c in induction_inv.claims_list)
    NotebookClient(nb, timeout=300, kernel_name="python3",
                   resources={"metadata": {"path": str(tmp_path)}}).execute()
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
              if o.output_type == "error"]
    assert not errors, errors
    html = induction_inv.to_html(tmp_path / "report.html").read_text()
    assert "<script" not in html and "http" not in html.replace("http-equiv", "")
    assert html.count("class=ok>verified") == sum(induction_inv.claims.verified)


# ---- the LLM loop over real HTTP ----------------------------------------------------------------


def _client(server):
    from interp_widgets.autointerp import Client

    return Client("scripted", base_url=server.base_url, api_key=KEY, max_retries=1,
                  backoff=0.0, timeout=10)


def test_llm_loop_runs_tools_feeds_errors_back_and_stops_when_done(model, induction, tmp_path):
    script = [
        {"tool_calls": [("check_behaviour", "{}")]},
        {"tool_calls": [("run_python", '{"code": "1"}')]},              # unknown tool
        {"tool_calls": [("ablate", '{"kind": "head", "layer": 2, ')]},  # malformed JSON
        {"tool_calls": [("ablate", '{"kind": "head", "layer": 2, "index": 2}'),
                        ("ablate", '{"kind": "head", "layer": 1, "index": 1}')]},
        {"content": "L2H2 carries the induction metric; L1H1 does not."},
    ]
    with ScriptedToolServer(script) as server:
        inv = investigate(model, induction, llm=_client(server), path=tmp_path / "inv.json")
    assert [s.tool for s in inv.steps] == ["check_behaviour", "run_python", "ablate", "ablate",
                                           "ablate"]
    assert all(s.by == "llm" for s in inv.steps)
    assert "Unknown tool 'run_python'" in inv.steps[1].error
    assert "not valid JSON" in inv.steps[2].error
    # the errors went back to the model as tool messages it can read
    tool_msgs = [m for m in server.requests[3]["messages"] if m["role"] == "tool"]
    assert any("Unknown tool" in m["content"] for m in tool_msgs)
    assert {t["function"]["name"] for t in server.requests[0]["tools"]} == set(TOOLS)
    claims = {(c.layer, c.index): c for c in inv.claims_list}
    assert claims[(2, 2)].verified and not claims[(1, 1)].verified
    assert inv.llm_tokens == 500 and "L2H2 carries" in inv.notes[-1]
    assert all(a == f"Bearer {KEY}" for a in server.auth)
    # the key is nowhere in what the investigation writes
    inv.report(tmp_path / "r.ipynb")
    inv.to_html(tmp_path / "r.html")
    for f in ("inv.json", "r.ipynb", "r.html"):
        assert KEY not in (tmp_path / f).read_text()


def test_llm_budget_and_endpoint_failure_keep_finished_steps(model, induction):
    many = [{"tool_calls": [("check_behaviour", "{}")]}] * 10
    with ScriptedToolServer(many) as server:
        inv = investigate(model, induction, llm=_client(server), budget=Budget(max_calls=3))
    assert len(inv.steps) == 3 and inv.stopped == "the budget of 3 tool calls is used up"
    with ScriptedToolServer(many, usage_tokens=400) as server:
        inv = investigate(model, induction, llm=_client(server),
                          budget=Budget(max_tokens=1000))
    assert inv.stopped.startswith("the budget of 1,000 LLM tokens") and len(inv.steps) == 3
    failing = [{"tool_calls": [("head_types", "{}")]}] + [{"status": 500}] * 5
    with ScriptedToolServer(failing) as server:
        inv = investigate(model, induction, llm=_client(server))
    assert [s.tool for s in inv.steps] == ["head_types"] and inv.steps[0].result
    assert inv.stopped.startswith("the LLM endpoint failed") and "500" in inv.stopped


# ---- the census --------------------------------------------------------------------------------


def test_census_classifies_drawn_units_with_intervals(model):
    corpus = iw.demo.corpus(200, seed=5)
    table = iw.census(model, 1, corpus, n=5, seed=1)
    assert len(table) == 5 and table.unit.is_unique
    assert set(table["class"]) <= {"dead", "dense", "monosemantic", "polysemantic"}
    for r in table.to_dict("records"):
        if r["class"] == "monosemantic":
            assert r["low"] > 0.3 and r["low"] <= r["score"] <= r["high"]
        if r["class"] == "polysemantic":
            assert isinstance(r["groups"], list) and r["groups"]
    view = iw.CensusView(table)
    assert view.classes == table["class"].tolist() and view.title == "Census of 5 neurons"
    from interp_widgets.widgets._codec import decode_array

    assert decode_array(view.units).tolist() == table.unit.tolist()
    scored = table["score"].notna().to_numpy()
    assert decode_array(view.scores)[scored, 0] == pytest.approx(table.score[scored].tolist())
    with pytest.raises(ValueError, match="DataFrame iw.census returns"):
        iw.CensusView([1, 2])
    same = iw.census(model, iw.neurons(model, 1), corpus, n=5, seed=1)  # a unit-engine basis
    assert same["class"].tolist() == table["class"].tolist()
    with pytest.raises(ValueError, match="corpus is empty"):
        iw.census(model, 1, [], n=2)
    with pytest.raises(TypeError, match="not a basis: pass iw.neurons"):
        iw.census(model, "mlp", corpus, n=2)


def test_top_level_names():
    assert iw.investigate is investigate and iw.Behaviour is Behaviour
    assert iw.Investigation is Investigation and callable(iw.census)


# ---- the view -----------------------------------------------------------------------------------


def test_investigation_view_streams_steps_and_stops_on_request(model, induction, tmp_path):
    done = iw.InvestigationView(investigate(model, induction, budget=Budget(max_calls=4)))
    assert [s["tool"] for s in done.steps] == ["check_behaviour", "patch_layers", "patch_heads",
                                               "direct_logit_attribution"]
    assert "grid" in done.steps[2] and "bars" in done.steps[1]
    assert "stopped: the budget of 4" in done.status
    from test_export import read_payload

    header, _ = read_payload(done.to_html(tmp_path / "inv.html").read_text())
    assert header["state"]["_view"] == "investigation"
    assert [s["tool"] for s in header["state"]["steps"]] == [s["tool"] for s in done.steps]

    seen = []
    view = iw.InvestigationView.start(model, induction)
    view.observe(lambda ch: seen.append(len(ch["new"])), names="steps")
    while len(view.steps) < 2 and view.running:
        view._thread.join(0.05)
    assert view.answer("stop", {}) == {"ok": True, "result": {"stopped": True}}
    inv = view.wait(120)
    assert not view.running and inv.stopped == "stopped by the user"
    assert 2 <= len(inv.steps) < 13 and len(view.steps) == len(inv.steps)
    assert seen == sorted(seen) and seen[0] >= 1  # steps arrived one by one
    assert [c["statement"] for c in view.claims] == [c.statement for c in inv.claims_list]
    assert view.answer("stop", {})["result"] == {"stopped": False}  # nothing left to stop


# ---- SAE features -------------------------------------------------------------------------------


def test_feature_knockout_equals_the_sae_splice_ablation(model):
    """Zeroing one feature while keeping the SAE's error term, as `sae.splice` does it."""
    from interp_widgets.sae.splice import ablate, run_with_saes

    sae = iw.demo.load_sae()
    b = Behaviour.article(model, n=4)
    feat = int(iw.find_features(model, sae, " an", against=" a", k=1).feature[0])
    e = unit_effect(model, b, Unit("feature", 1, feat), mode="zero", sae=sae)
    want = []
    for i, toks in enumerate(b.tokens(model)):
        run = run_with_saes(model, toks, [sae], use_error_term=True, edits=[ablate(sae, feat)])
        want.append(float(b.metric([i]).bind(model).per_row(run.logits)[0]))
    assert e.knocked_out.tolist() == pytest.approx(want, abs=1e-3)


def test_find_features_ranks_decoder_directions_through_the_unembedding(model):
    sae = iw.demo.load_sae()
    df = iw.find_features(model, sae, " an", against=" a", k=3)
    dirs = sae.feature_directions().detach().float()
    dirs = dirs - dirs.mean(-1, keepdim=True)  # the demo is a LayerNorm model
    a, w = (model.tokenizer.encode(t, add_special_tokens=False)[0] for t in (" an", " a"))
    want = dirs @ (model.bridge.W_U[:, a] - model.bridge.W_U[:, w]).float()
    assert df.feature.tolist() == want.topk(3).indices.tolist()
    assert df.effect.tolist() == pytest.approx(want.topk(3).values.tolist(), rel=1e-4)


def test_plan_with_an_sae_checks_features_and_steering_moves_the_metric(model):
    sae = iw.demo.load_sae()
    b = Behaviour.article(model, n=16)
    inv = investigate(model, b, sae=sae, max_units=2)
    assert "feature_search" in [s.tool for s in inv.steps]
    feats = [c for c in inv.claims_list if c.kind == "feature"]
    assert feats and all(c.statement.startswith(f"L1F{c.index}") for c in feats)
    top = int(iw.find_features(model, sae, " an", against=" a", k=1).feature[0])
    out = call_tool(Context(model, b.subset([i for i, a in enumerate(b.answer) if a == " a"]),
                            sae=sae), "steer_feature", {"index": top, "coeff": 8.0})
    # on prompts whose answer is " a", pushing the " an" feature lowers logit(a) - logit(an)
    assert out["high"] < 0 and out["low"] <= out["shift"] <= out["high"]
    with pytest.raises(ToolError, match="must be a number"):
        call_tool(Context(model, b, sae=sae), "steer_feature", {"index": 1, "coeff": "big"})
    with pytest.raises(ToolError, match="needs an SAE"):
        call_tool(Context(model, b), "feature_search", {})


def test_probe_tool_reads_the_article_from_the_residual_stream(model):
    b = Behaviour.article(model, n=32)
    ctx = Context(model, b)
    late = call_tool(ctx, "probe", {"layer": 2})
    assert late["positive"] == " an" and late["dense_f1"] > 0.9
    lo, hi = late["dense_low"], late["dense_high"]
    assert (lo <= late["dense_f1"] <= hi) or (lo != lo and late["dense_f1"] == 1.0)  # NaN: no
    # interval when every fold scores the same
    # the same rows by hand: resid_post of the last layer at the last token
    run = model.run([p for p in b.prompts], names=["blocks.2.hook_resid_post"])
    last = torch.stack([run.cache["blocks.2.hook_resid_post"][i, n - 1]
                        for i, n in enumerate(run.lengths)])
    from sklearn.linear_model import LogisticRegression

    y = [a == " an" for a in b.answer]
    assert LogisticRegression(max_iter=2000).fit(last.numpy(), y).score(last.numpy(), y) == 1.0
    with pytest.raises(ToolError, match="exactly two distinct answers"):
        call_tool(Context(model, Behaviour.induction(model, n=4)), "probe", {"layer": 1})
