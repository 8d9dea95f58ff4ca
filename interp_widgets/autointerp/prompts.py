"""The prompts, written out (after Bills et al. 2023, "Language models can explain neurons in
language models", and EleutherAI's Delphi for detection and fuzzing).

Explanation (chat; `explain_messages`). System message::

    We're studying neurons in a neural network. Each neuron looks for some particular thing in a
    short document. Look at the parts of the document the neuron activates for and summarize in a
    single sentence what the neuron is looking for. Don't list examples of words.

    The activation format is token<tab>activation. Activation values range from 0 to 10. A neuron
    finding what it's looking for is represented by a non-zero activation value. The higher the
    activation value, the stronger the match.

User message: each record between ``<start>`` and ``<end>``, one ``token<TAB>activation`` line per
token, activations as integers 0-10 scaled by the maximum over the shown records
(``min(10, floor(10 * relu(a) / max))``). When fewer than 20% of the shown tokens are non-zero
(a sparse unit), the records are repeated with the zero lines left out, after the line "Same
activations, but with all zeros filtered out:". The message ends with "Explanation of neuron 1
behavior: the main thing this neuron does is find", and the reply completes that sentence.
OpenAI's few-shot examples are left out to keep the prompt short.

Simulation, with logprobs (`/v1/completions`, `simulation_prompt`): the same preamble, the
explanation, then the record with ``unknown`` in place of every activation. The request echoes the
prompt with ``max_tokens=0`` and ``logprobs=15``; at each ``unknown`` the top log-probabilities
over the tokens "0".."10" give the predicted activation as their expected value (OpenAI's
"all at once" simulator: one call per record).

Simulation, without logprobs (chat at temperature 0, `simulation_json_messages`): the tokens are
numbered and the model is asked for ``{"activations": [...]}``, one integer 0-10 per token.

Detection and fuzzing (chat at temperature 0, after Delphi): a batch of texts, each numbered;
detection asks for the probability that each text contains what the explanation describes;
fuzzing marks tokens as ``<<token>>`` and asks for the probability that the marked tokens are the
ones the explanation describes. Delphi asks for 0/1; we ask for probabilities so that the AUC is
threshold-free (balanced accuracy reads them at 0.5). Answer: ``{"probabilities": [...]}``.

Tokens are shown with newlines and tabs escaped (``\\n``, ``\\t``) so that each stays on its line.
"""

from __future__ import annotations

from collections.abc import Sequence

from .records import ActivationRecord, normalized

PREAMBLE = (
    "We're studying neurons in a neural network. Each neuron looks for some particular thing in "
    "a short document. "
)
FORMAT_NOTE = (
    "The activation format is token<tab>activation. Activation values range from 0 to 10. A "
    "neuron finding what it's looking for is represented by a non-zero activation value. The "
    "higher the activation value, the stronger the match."
)
EXPLAIN_SYSTEM = (
    PREAMBLE + "Look at the parts of the document the neuron activates for and summarize in a "
    "single sentence what the neuron is looking for. Don't list examples of words.\n\n"
    + FORMAT_NOTE
)
EXPLAIN_LEAD = "the main thing this neuron does is find"
SPARSE_FRACTION = 0.2
UNKNOWN = "unknown"
SIMULATE_PREAMBLE = (
    PREAMBLE + "Look at an explanation of what the neuron does, and try to predict its "
    "activations on each token.\n\nThe activation format is token<tab>activation, activations "
    'go from 0 to 10, "unknown" indicates an unknown activation. Most activations will be 0.\n\n'
)


def show_token(token: str) -> str:
    """A token on one line: newlines and tabs escaped."""
    return token.replace("\\", "\\\\").replace("\n", "\\n").replace("\t", "\\t").replace("\r",
                                                                                         "\\r")


def _block(tokens: Sequence[str], values: Sequence[object], keep_zeros: bool = True) -> str:
    lines = [f"{show_token(t)}\t{v}" for t, v in zip(tokens, values) if keep_zeros or v != 0]
    return "<start>\n" + "".join(line + "\n" for line in lines) + "<end>\n"


def explain_messages(records: Sequence[ActivationRecord]) -> list[dict[str, str]]:
    """The chat messages that ask for an explanation of `records` (see the module docstring)."""
    values = normalized(records)
    body = "Neuron 1\nActivations:\n" + "".join(
        _block(r.tokens, v) for r, v in zip(records, values))
    total = sum(len(v) for v in values)
    nonzero = sum(x > 0 for v in values for x in v)
    if total and nonzero / total < SPARSE_FRACTION:
        body += "\nSame activations, but with all zeros filtered out:\n" + "".join(
            _block(r.tokens, v, keep_zeros=False) for r, v in zip(records, values) if any(v))
    body += f"\nExplanation of neuron 1 behavior: {EXPLAIN_LEAD}"
    return [{"role": "system", "content": EXPLAIN_SYSTEM}, {"role": "user", "content": body}]


def clean_explanation(text: str) -> str:
    """The completion as an explanation: one line, without the lead-in repeated or a final
    period."""
    text = " ".join(text.strip().split())
    low = text.lower()
    for lead in (f"explanation of neuron 1 behavior: {EXPLAIN_LEAD}", EXPLAIN_LEAD):
        if low.startswith(lead):
            text = text[len(lead):].strip()
            break
    return text.rstrip(".").strip()


def simulation_prompt(explanation: str, tokens: Sequence[str]) -> tuple[str, list[int]]:
    """(prompt, character offset of each token's "unknown") for the logprob simulator."""
    head = (SIMULATE_PREAMBLE + "Neuron 1\nExplanation of neuron 1 behavior: "
            f"{EXPLAIN_LEAD} {explanation}\nActivations:\n<start>\n")
    parts, offsets, at = [head], [], len(head)
    for t in tokens:
        line = f"{show_token(t)}\t"
        offsets.append(at + len(line))
        parts.append(line + UNKNOWN + "\n")
        at += len(line) + len(UNKNOWN) + 1
    parts.append("<end>\n")
    return "".join(parts), offsets


def simulation_json_messages(explanation: str, tokens: Sequence[str]) -> list[dict[str, str]]:
    """Chat messages asking for one integer 0-10 per token, as JSON."""
    listing = "".join(f"{i}\t{show_token(t)}\n" for i, t in enumerate(tokens))
    user = (f"Explanation of the neuron's behavior: {EXPLAIN_LEAD} {explanation}\n\n"
            f"Tokens (index<tab>token):\n{listing}\n"
            f'Reply with JSON only: {{"activations": [...]}} with exactly {len(tokens)} '
            "integers from 0 to 10, one per token in order.")
    system = SIMULATE_PREAMBLE + "Most activations will be 0."
    return [{"role": "system", "content": system}, {"role": "user", "content": user}]


JUDGE_SYSTEM = (
    "You are a meticulous interpretability researcher. You will be given a description of a "
    "feature of text and several numbered examples. {task} Reply with JSON only: "
    '{{"probabilities": [...]}}, one number between 0 and 1 per example, in order.'
)
DETECTION_TASK = ("For each example, give the probability that the text contains what the "
                  "description describes.")
FUZZING_TASK = ("In each example some tokens are marked as <<token>>. For each example, give the "
                "probability that the marked tokens are exactly the ones the description "
                "describes.")


def judge_messages(explanation: str, texts: Sequence[str], task: str) -> list[dict[str, str]]:
    """Chat messages for detection (`DETECTION_TASK`) or fuzzing (`FUZZING_TASK`)."""
    examples = "".join(f"Example {i + 1}: {show_token(t)}\n" for i, t in enumerate(texts))
    user = (f"Description: {explanation}\n\n{examples}\n"
            f"Give {len(texts)} probabilities.")
    return [{"role": "system", "content": JUDGE_SYSTEM.format(task=task)},
            {"role": "user", "content": user}]


def marked_text(tokens: Sequence[str], marked: Sequence[bool]) -> str:
    """The text with marked tokens as ``<<token>>``."""
    return "".join(f"<<{t}>>" if m else t for t, m in zip(tokens, marked))
