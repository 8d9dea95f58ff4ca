"""The demo-model training script's curriculum options (the training itself is too slow for CI:
its figures are in interp_widgets/demo/model/training_log.json)."""

import importlib.util
import sys
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "train_demo_model.py"


@pytest.fixture(scope="module")
def script():
    spec = importlib.util.spec_from_file_location("train_demo_model", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def args_of(script, monkeypatch, *argv):
    monkeypatch.setattr(sys, "argv", ["train_demo_model.py", *argv])
    return script.parse_args()


def test_default_schedule_is_the_committed_models(script, monkeypatch):
    args = args_of(script, monkeypatch)
    kinds = [script.schedule(step, args)[0] for step in range(3700 + 20)]
    assert kinds[:2000] == ["first_text"] * 2000
    assert kinds[2000:3200] == ["induction_40"] * 1200
    assert kinds[3200:3700] == ["induction_72"] * 500
    assert kinds[3700:3720] == (["text"] * 9 + ["long"]) * 2
    assert script.schedule(0, args)[1] == pytest.approx(args.lr / 50)  # warm-up
    last = 3700 + args.text_steps - 1
    assert script.schedule(last, args)[1] == pytest.approx(args.min_lr)
    assert (args.batch, args.row_len, args.induction_batch, args.induction_text_rows) == (
        32, 64, 16, 8)


def test_first_text_steps_come_before_the_induction_stages(script, monkeypatch):
    args = args_of(script, monkeypatch, "--first-text-steps", "100", "--induction-rows", "40",
                   "--induction-steps", "10", "--text-steps", "5")
    kinds = [script.schedule(step, args)[0] for step in range(115)]
    assert kinds == ["first_text"] * 100 + ["induction_40"] * 10 + ["text"] * 5
    assert script.schedule(0, args)[1] == pytest.approx(args.lr / 50)  # warm-up, once
    assert script.schedule(100, args)[1] == pytest.approx(args.lr)


def test_induction_stages_and_text_lr(script, monkeypatch):
    args = args_of(script, monkeypatch, "--first-text-steps", "0", "--induction-rows", "40,72",
                   "--induction-steps", "4000,1400", "--text-lr", "1e-3", "--long-every", "16")
    assert script.induction_stages(args) == [(40, 4000), (72, 1400)]
    assert script.schedule(3999, args)[0] == "induction_40"
    assert script.schedule(5399, args)[0] == "induction_72"
    kind, lr = script.schedule(5400, args)
    assert kind == "text" and lr == pytest.approx(1e-3)
    assert script.schedule(5400 + 15, args)[0] == "long"


@pytest.mark.parametrize("rows, steps", [("40,72", "4000"), ("40,x", "1,2"), ("0", "10")])
def test_bad_stages_say_what_is_needed(script, monkeypatch, rows, steps):
    with pytest.raises(SystemExit, match="as many positive integers"):
        args_of(script, monkeypatch, "--induction-rows", rows, "--induction-steps", steps)


@pytest.mark.parametrize("flag, value", [("--long-every", "0"), ("--task-share", "1.5"),
                                         ("--induction-text-rows", "-1"),
                                         ("--first-text-steps", "-5")])
def test_bad_options_are_refused(script, monkeypatch, capsys, flag, value):
    with pytest.raises(SystemExit):
        args_of(script, monkeypatch, flag, value)
    assert "--long-every must be >= 1" in capsys.readouterr().err


def test_text_rows_are_learned_alongside_induction_rows(script, monkeypatch):
    """A first text step, two induction steps with text rows, then two text steps, on a
    one-layer model."""
    from transformers import AutoTokenizer

    from interp_widgets.demo import MODEL_DIR
    from interp_widgets.demo.corpus import corpus

    args = args_of(script, monkeypatch, "--first-text-steps", "1", "--induction-rows", "12",
                   "--induction-steps", "2", "--induction-batch", "2",
                   "--induction-text-rows", "3", "--text-steps", "2",
                   "--batch", "4", "--row-len", "16", "--layers", "1", "--d-model", "32",
                   "--heads", "2", "--long-every", "100", "--eval-every", "100")
    tok = AutoTokenizer.from_pretrained(MODEL_DIR)
    model = script.build_model(args, len(tok))
    before = model.transformer.wte.weight.detach().clone()
    batches = script.Batches(corpus(20, seed=0), tok, seed=0)
    monkeypatch.setattr(script, "CURVE_EVERY", 1)
    curve, evals = script.train(model, batches, tok, args, t0=0.0)
    assert [sorted(k for k in p if k.startswith("loss_")) for p in curve] == (
        [["loss_first_text"]] + [["loss_induction_12", "loss_text"]] * 2
        + [["loss_repeat", "loss_text"]] * 2)
    assert evals == [] and not torch.equal(before, model.transformer.wte.weight)
