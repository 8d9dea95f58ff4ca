"""Behaviours: a prompt set with a metric, and optionally corrupted twins.

A behaviour is what an investigation explains: on each prompt the model should rank `answer`
above `wrong` at the last position; the metric is the logit difference
``logit(answer) - logit(wrong)`` per prompt. `corrupt` prompts (one per prompt, same token
length) remove what the behaviour needs, so activation patching between the two localises it.

    b = iw.Behaviour.induction(model)     # repeated random spans
    b = iw.Behaviour.ioi(model)           # indirect-object sentences (demo task)
    b = iw.Behaviour.article(model)       # " a" / " an" agreement (demo task)
    b = iw.Behaviour(prompts, answer=[...], wrong=[...], corrupt=[...])
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

from ..analysis.logit_lens import single_token_id
from ..analysis.metrics import logit_diff
from ..model import Model

Prompt = str | torch.Tensor  # text, or token ids LongTensor[pos] (BOS included where wanted)


@dataclass
class Behaviour:
    """prompts: texts or token ids [pos]; answer, wrong: one token (text or id) per prompt (or
    one for all); corrupt: one corrupted prompt per prompt, of the same token length, or None.
    name: a short label for reports."""

    prompts: list[Prompt]
    answer: list[str | int]
    wrong: list[str | int]
    corrupt: list[Prompt] | None = None
    name: str = "behaviour"
    description: str = ""
    known: dict = field(default_factory=dict)  # for case studies: the known answer (see cases)

    def __post_init__(self) -> None:
        self.prompts = list(self.prompts)
        n = len(self.prompts)
        if n == 0:
            raise ValueError("A behaviour needs at least one prompt; got an empty list.")
        self.answer = _per_prompt(self.answer, n, "answer")
        self.wrong = _per_prompt(self.wrong, n, "wrong")
        if self.corrupt is not None:
            self.corrupt = list(self.corrupt)
            if len(self.corrupt) != n:
                raise ValueError(f"{n} prompts but {len(self.corrupt)} corrupt prompts: give one "
                                 "corrupted twin per prompt (or corrupt=None).")

    def __len__(self) -> int:
        return len(self.prompts)

    # ---- tokens and the metric -----------------------------------------------------------
    def tokens(self, model: Model, which: str = "clean") -> list[torch.Tensor]:
        """[LongTensor[pos]] per prompt (`which`: "clean" or "corrupt"), tokenized as the model
        tokenizes a prompt (its BOS convention); token-id prompts are taken as they are."""
        items = self.prompts if which == "clean" else self.corrupt
        if items is None:
            raise ValueError("This behaviour has no corrupt prompts.")
        return [p.reshape(-1).long() if isinstance(p, torch.Tensor) else model.to_tokens(p)[0]
                for p in items]

    def groups(self, model: Model) -> list[list[int]]:
        """Prompt indices grouped by token length (clean and corrupt must match within a pair):
        each group runs as one batch."""
        clean = self.tokens(model)
        corrupt = self.tokens(model, "corrupt") if self.corrupt is not None else None
        out: dict[int, list[int]] = {}
        for i, t in enumerate(clean):
            if corrupt is not None and len(corrupt[i]) != len(t):
                raise ValueError(
                    f"Prompt {i} has {len(t)} tokens but its corrupt twin has "
                    f"{len(corrupt[i])}: clean and corrupt must line up token by token.\n"
                    f"  clean:   {model.to_str_tokens(t)}\n  corrupt: "
                    f"{model.to_str_tokens(corrupt[i])}")
            out.setdefault(len(t), []).append(i)
        return list(out.values())

    def metric(self, idx: Sequence[int] | None = None):
        """The logit-difference metric (`iw.logit_diff`) for prompts `idx` (all by default)."""
        idx = range(len(self)) if idx is None else idx
        return logit_diff([self.answer[i] for i in idx], [self.wrong[i] for i in idx])

    def values(self, model: Model, which: str = "clean") -> torch.Tensor:
        """Tensor[n_prompts]: the metric on each prompt (or on its corrupt twin)."""
        out = torch.empty(len(self))
        toks = self.tokens(model, which)
        for idx in self.groups(model):
            batch = torch.stack([toks[i] for i in idx]).to(model.device)
            with torch.no_grad():
                logits = model.bridge(batch)
            out[idx] = self.metric(idx).bind(model).per_row(logits).float().cpu()
        return out

    def subset(self, idx: Sequence[int]) -> Behaviour:
        """The behaviour on prompts `idx` only."""
        idx = list(idx)
        return Behaviour([self.prompts[i] for i in idx], [self.answer[i] for i in idx],
                         [self.wrong[i] for i in idx],
                         None if self.corrupt is None else [self.corrupt[i] for i in idx],
                         name=self.name, description=self.description, known=self.known)

    def check(self, model: Model) -> dict:
        """{"mean", "fraction_right", "n"} of the clean metric; see `investigate` for how a
        behaviour the model fails is reported."""
        v = self.values(model)
        return {"mean": float(v.mean()), "fraction_right": float((v > 0).float().mean()),
                "n": len(self)}

    # ---- ready-made behaviours ----------------------------------------------------------------
    @classmethod
    def induction(cls, model: Model, n: int = 16, span: int = 12, seed: int = 0) -> Behaviour:
        """Induction on repeated random spans: the prompt is [BOS, A, A[:span-1]] and the answer
        is A's next token (copied from the first copy); the corrupt twin replaces the first copy
        by another random span B, so nothing can be copied. `wrong` is B's token at the same
        place, a token the model has no reason to prefer."""
        from ..demo.tasks import random_tokens

        gen = torch.Generator().manual_seed(seed)
        a = random_tokens((n, span), gen, model.tokenizer)  # [n, span]
        b = random_tokens((n, span), gen, model.tokenizer)
        bos = _bos_ids(model)
        prompts, corrupt, answer, wrong = [], [], [], []
        for i in range(n):
            k = span - 1  # predict A[k] from the second copy A[:k]
            prompts.append(torch.cat([bos, a[i], a[i, :k]]))
            corrupt.append(torch.cat([bos, b[i], a[i, :k]]))
            answer.append(int(a[i, k]))
            wrong.append(int(b[i, k]) if int(b[i, k]) != int(a[i, k]) else int(b[i, 0]))
        return cls(prompts, answer, wrong, corrupt, name="induction",
                   description=f"copy the next token of a repeated random span ({span} tokens)")

    @classmethod
    def ioi(cls, model: Model, n: int = 16, seed: int = 1, subject_first: bool = True
            ) -> Behaviour:
        """Indirect-object identification on held-out demo sentences ("When A and B ..., A gave
        ... to" -> B). The corrupt twin replaces the second mention of the subject by the
        indirect object. `subject_first`: keep only the name order in which the subject comes
        first (the demo model gets that order right; see the quickstart)."""
        from ..demo.tasks import ioi_prompts

        rows = []
        for prompt, io, s in ioi_prompts(8 * n, seed=seed):
            if subject_first and prompt.index(s.strip()) > prompt.index(io.strip()):
                continue
            head, tail = prompt.rsplit(s, 1)
            rows.append((prompt, io, s, head + io + tail))
            if len(rows) == n:
                break
        return cls([r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows],
                   [r[3] for r in rows], name="ioi",
                   description="name the indirect object, not the repeated subject")

    @classmethod
    def article(cls, model: Model, n: int = 16, seed: int = 0) -> Behaviour:
        """" a" / " an" agreement on held-out demo sentences: answer is the right article, wrong
        the other. No corrupt twins (an ablation-based investigation)."""
        from ..demo.tasks import article_prompts

        rows = article_prompts(n, seed=seed)
        return cls([r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows], None,
                   name="article", description="choose ' an' before a vowel-initial noun")

    @classmethod
    def from_task(cls, model: Model, task: str, n: int = 16, seed: int = 0) -> Behaviour:
        """One of the demo tasks (`iw.demo.tasks`) by name: "induction", "ioi", "article"."""
        makers = {"induction": cls.induction, "ioi": cls.ioi, "article": cls.article}
        if task not in makers:
            raise ValueError(f"Unknown task {task!r}; the demo tasks are {sorted(makers)}.")
        return makers[task](model, n=n, seed=seed)


def _per_prompt(tokens, n: int, what: str) -> list:
    items = [tokens] if isinstance(tokens, (str, int)) else list(tokens)
    if len(items) == 1:
        items = items * n
    if len(items) != n:
        raise ValueError(f"{what} has {len(items)} tokens for {n} prompts: give one, or one per "
                         "prompt.")
    return items


def _bos_ids(model: Model) -> torch.Tensor:
    """LongTensor[0 or 1]: what the model prepends to a prompt (its BOS convention)."""
    probe = model.to_tokens("x")[0].tolist()
    plain = model.tokenizer.encode("x", add_special_tokens=False)
    return torch.tensor(probe[: len(probe) - len(plain)], dtype=torch.long)


def answer_ids(model: Model, behaviour: Behaviour) -> tuple[list[int], list[int]]:
    """(answer ids, wrong ids), one per prompt."""
    def ids(items):
        return [t if isinstance(t, int) else single_token_id(model, t) for t in items]
    return ids(behaviour.answer), ids(behaviour.wrong)
