"""BaseWidget: the one anywidget class every interp_widgets view subclasses.

It ships the bundle (`static/index.js` + `index.css`), names the JS view in `_view`, answers the
browser's requests for data fetched on demand, and exports itself as static HTML.

Protocol (js/src/rpc.ts is the other half): the browser sends
``{"kind": "request", "id", "method", "args"}``; we answer
``{"kind": "response", "id", "ok": True, "result"}`` or
``{"kind": "response", "id", "ok": False, "error": "<message for a person>"}``.
Memoryviews inside `result` travel as binary buffers, replaced by ``{"$buffer": i}``.
anywidget's `experimental.command` does the same round trip but drops exceptions on the floor
(the browser waits for an answer that never comes) and gives up after 3 s, so we keep our own.
"""

from __future__ import annotations

import inspect
import pathlib
import traceback
from collections.abc import Callable, Iterator
from typing import Any, ClassVar

import anywidget
import torch
import traitlets as t

from ._codec import extract_buffers

STATIC = pathlib.Path(__file__).resolve().parent.parent / "static"

Handler = Callable[..., Any]


def request_handler(name: str) -> Callable[[Handler], Handler]:
    """Mark a method as the answer to the browser's request `name`; args arrive as keywords."""

    def mark(fn: Handler) -> Handler:
        fn._iw_request = name  # type: ignore[attr-defined]
        return fn

    return mark


class BaseWidget(anywidget.AnyWidget):
    """Common base: bundle, view name, request handling, `.data`, `.to_html(path)`."""

    _esm = STATIC / "index.js"
    _css = STATIC / "index.css"
    _view = t.Unicode("").tag(sync=True)
    #: bumped after the data traits change together (e.g. a new prompt): the view redraws once
    _rev = t.Int(0).tag(sync=True)
    _requests: ClassVar[dict[str, str]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls._requests = {
            fn._iw_request: name
            for klass in reversed(cls.__mro__)
            for name, fn in vars(klass).items()
            if callable(fn) and hasattr(fn, "_iw_request")
        }

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.on_msg(self._on_msg)

    # -- requests -------------------------------------------------------------------------------
    def _on_msg(self, _widget: Any, content: Any, _buffers: list[bytes]) -> None:
        if not isinstance(content, dict) or content.get("kind") != "request":
            return
        reply = self.answer(content.get("method", ""), content.get("args") or {})
        body, buffers = extract_buffers(reply)
        self.send({"kind": "response", "id": content.get("id"), **body}, buffers)

    def answer(self, method: str, args: dict[str, Any]) -> dict[str, Any]:
        """{"ok": True, "result": ...} or {"ok": False, "error": message}; never raises."""
        try:
            return {"ok": True, "result": self.call(method, args)}
        except Exception as err:  # noqa: BLE001 - every failure must reach the person
            msg = str(err) or type(err).__name__
            if not isinstance(err, (ValueError, KeyError, IndexError, LookupError)):
                frame = traceback.extract_tb(err.__traceback__)[-1]
                where = f"{pathlib.Path(frame.filename).name}:{frame.lineno}"
                msg = f"{type(err).__name__}: {msg} (in {where})"
            return {"ok": False, "error": f"{method}: {msg}"}

    def call(self, method: str, args: dict[str, Any]) -> Any:
        """Run the handler of `method` with `args`; raises ValueError for a bad method or args."""
        if method not in self._requests:
            known = ", ".join(sorted(self._requests)) or "none"
            raise ValueError(f"unknown request {method!r}; this widget answers: {known}")
        if not isinstance(args, dict):
            raise ValueError(f"arguments must be a dict, got {type(args).__name__}")
        fn = getattr(self, self._requests[method])
        try:
            inspect.signature(fn).bind(**args)
        except TypeError as err:
            raise ValueError(f"bad arguments {sorted(args)}: {err}") from None
        return fn(**args)

    # -- static export --------------------------------------------------------------------------
    def static_answers(self) -> Iterator[tuple[str, dict[str, Any], Any]]:
        """(method, args, result) for every request the view can make, precomputed for
        `to_html`. Override in widgets that have requests."""
        return iter(())

    def to_html(self, path: str | pathlib.Path, *, title: str | None = None) -> pathlib.Path:
        """Write this widget as one self-contained HTML file (no kernel, no network needed)."""
        from .export import write_html

        return write_html(self, path, title=title)

    def save_image(self, path: str | pathlib.Path, *, width: int = 1400, scale: float = 1.0
                   ) -> pathlib.Path:
        """Save this view as a PNG, drawn by headless Chromium from its static export (needs
        `playwright` and a Chromium binary; see `export.write_image`). width: the page's width
        in CSS px; scale: device pixels per CSS px (2 for a sharp image)."""
        from .export import write_image

        return write_image(self, path, width=width, scale=scale)

    @property
    def data(self) -> Any:
        """The numbers this widget shows, as plain Python (see each widget)."""
        raise NotImplementedError


class PromptWidget(BaseWidget):
    """A view of one model run on one prompt, which the browser can re-run on a new prompt.

    Made without a model (from precomputed results), it shows no prompt box."""

    prompt = t.Unicode("").tag(sync=True)
    can_rerun = t.Bool(False).tag(sync=True)

    def __init__(self, model: Any, prompt: Any, **kwargs: Any) -> None:
        self._model = model
        super().__init__(can_rerun=model is not None,
                         prompt=prompt if isinstance(prompt, str) else "", **kwargs)

    def _rerun_model(self) -> Any:
        """The model to re-run, or a ValueError saying there is none."""
        if self._model is None:
            raise ValueError("this view was made from precomputed results: there is no model "
                             "to re-run")
        return self._model


def check_index(name: str, value: Any, size: int) -> int:
    """`value` as an int in 0..size-1, or a ValueError that says the valid range."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    if not 0 <= value < size:
        raise ValueError(f"{name} {value} is out of range 0..{size - 1}")
    return value


def check_prompt(prompt: Any) -> Any:
    """A non-empty prompt string (token tensors pass through), or a ValueError saying what is
    wrong."""
    if isinstance(prompt, torch.Tensor):
        return prompt
    if not isinstance(prompt, str):
        raise ValueError(f"the prompt must be text, got {type(prompt).__name__}")
    if not prompt.strip():
        raise ValueError("the prompt is empty: type some text to run the model on")
    return prompt
