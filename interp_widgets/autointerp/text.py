"""Text from an LLM or a file made safe to store, reuse and show.

- `safe_text`: lone surrogates (which UTF-8, and so SQLite, cannot encode) become U+FFFD.
- `normalize_explanation`: an explanation as one line of at most `MAX_EXPLANATION_CHARS`
  characters, without control characters or bidirectional-formatting characters (an U+202E
  "right-to-left override" reverses all text after it on screen); returns how long it was when
  it had to be cut, so the cut can be noted.
- `display_text`: any label or prompt for a view, with those characters shown as visible
  escapes (``\\u202e``) instead of acting on the text around them.
"""

from __future__ import annotations

import re
import unicodedata

MAX_EXPLANATION_CHARS = 400
#: characters that reorder text on screen: embeddings, overrides, isolates, marks
BIDI_CONTROLS = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e"
                          "\u2066\u2067\u2068\u2069")
_SURROGATE = re.compile("[\ud800-\udfff]")
CUT_MARK = " […]"


def safe_text(text: object) -> str:
    """`text` as a str that UTF-8 can encode (lone surrogates replaced by U+FFFD)."""
    return _SURROGATE.sub("\ufffd", str(text))


def _hidden(ch: str) -> bool:
    """Control (Cc: C0, DEL, C1) and bidirectional-formatting characters."""
    return ch in BIDI_CONTROLS or unicodedata.category(ch) == "Cc"


def normalize_explanation(text: object, max_chars: int = MAX_EXPLANATION_CHARS
                          ) -> tuple[str, int]:
    """(explanation, original length if it was cut else 0): surrogates replaced, control and
    bidi characters removed (a tab or newline becomes a space), whitespace runs joined, and
    longer than `max_chars` cut at a word boundary with " […]" appended."""
    s = safe_text(text)
    n = len(s)
    s = s[:16 * max_chars]  # what can survive the cut (whitespace runs and removed characters
    # aside); a longer text is noted as cut at its whole length
    s = "".join(" " if ch in "\t\n\r\x0b\x0c" else ch for ch in s if ch in "\t\n\r\x0b\x0c"
                or not _hidden(ch))
    s = " ".join(s.split())
    if len(s) <= max_chars and n <= 16 * max_chars:
        return s, 0
    keep = max_chars - len(CUT_MARK)
    head = s[:keep]
    if " " in head[keep // 2:]:
        head = head[:head.rindex(" ")]
    return head.rstrip() + CUT_MARK, n


def display_text(text: object) -> str:
    """`text` for a view: surrogates replaced, and control and bidi characters other than tab
    and newline shown as ``\\uXXXX`` escapes, so that they act on nothing around them."""
    s = safe_text(text)
    if s.isascii() and s.isprintable():
        return s
    return "".join(f"\\u{ord(ch):04x}" if ch not in "\t\n" and _hidden(ch) else ch for ch in s)
