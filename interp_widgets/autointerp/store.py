"""The result store: explanations and scores in one SQLite file (stdlib `sqlite3`).

One row per (model, source, unit, explainer): `source` is the hook name for neurons or an SAE /
dictionary id; `explainer` the LLM's name or "offline-statistical". A row holds the explanation
and its scores together, so a unit is stored whole or not at all. Every write is one
``BEGIN IMMEDIATE`` transaction on its own connection; the file is in WAL mode with a busy
timeout, so threads and processes can write at once. Export / import as JSON in Neuronpedia's
explanation shape (``modelId``, ``layer``, ``index``, ``description``, ``explanationModelName``,
``typeName``, ``scores: [{value, explanationScoreTypeName, explanationScoreModelName}]``).

The store opens only its own files. Its marker is SQLite's ``PRAGMA application_id`` (`APP_ID`,
"IWAI") and an ``info`` table holding ``schema_version``; both are read, with reads only,
before anything is written. A file that is not SQLite, is corrupt, belongs to another
application, has another ``explanations`` table, or was written by a newer version (a higher
schema_version) is refused with a `StoreError` that names the path and what was found, and is
left exactly as it was. A file of an older version of this store is migrated in one transaction
(version 1, written before the marker existed: the marker is added).

Text is made safe before it is stored: explanations by `text.normalize_explanation` (length cap,
the cut noted in ``meta``; control and bidi characters removed), other text columns by
`text.safe_text` (lone surrogates, which UTF-8 cannot encode, replaced).

No API key is ever passed in here; as a guard, a write that contains the value of
`OPENAI_API_KEY` is refused.
"""

from __future__ import annotations

import json
import math
import os
import sqlite3
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import StoreError
from .score import SCORE_COLUMNS, SCORE_NAMES, Scores
from .text import normalize_explanation, safe_text

SCHEMA_VERSION = 2
APP_ID = 0x49574149  # "IWAI" in SQLite's header: PRAGMA application_id
APPLICATION = "interp_widgets.autointerp"
_SCHEMA = """
CREATE TABLE IF NOT EXISTS explanations (
    model TEXT NOT NULL, source TEXT NOT NULL, unit INTEGER NOT NULL, explainer TEXT NOT NULL,
    kind TEXT NOT NULL, explanation TEXT NOT NULL, scores TEXT NOT NULL, score REAL,
    meta TEXT NOT NULL, created REAL NOT NULL,
    PRIMARY KEY (model, source, unit, explainer));
CREATE TABLE IF NOT EXISTS info (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""
#: the columns of `explanations` (the same in versions 1 and 2)
COLUMNS = ("model", "source", "unit", "explainer", "kind", "explanation", "scores", "score",
           "meta", "created")
_SQLITE_HEADER = b"SQLite format 3\x00"
TYPE_NAMES = {"llm": "oai_token-act-pair", "statistical": "iw_token-enrichment"}
_KINDS = {v: k for k, v in TYPE_NAMES.items()}


@dataclass
class Entry:
    """One unit's explanation and scores. `score` is the headline (pooled correlation)."""

    model: str
    source: str
    unit: int
    explainer: str
    kind: str
    explanation: str
    scores: Scores = field(default_factory=Scores)
    meta: dict[str, Any] = field(default_factory=dict)
    created: float = 0.0

    @property
    def score(self) -> float:
        return self.scores.correlation

    def row(self) -> dict[str, Any]:
        """A flat dict (for tables): keys, explanation and every score with its 95% interval
        (``<score>_low``, ``<score>_high``; NaN where it has none)."""
        return {"model": self.model, "source": self.source, "unit": self.unit,
                "explainer": self.explainer, "kind": self.kind, "explanation": self.explanation,
                **self.scores.row()}

    def neuronpedia(self) -> dict[str, Any]:
        """This entry in Neuronpedia's explanation shape (+ our fields under "interp_widgets")."""
        scores = [{"value": None if math.isnan(v) else v,
                   "explanationScoreTypeName": f"iw_{k}",
                   "explanationScoreModelName": self.scores.simulator}
                  for k in SCORE_NAMES if not math.isnan(v := getattr(self.scores, k))]
        return {"modelId": self.model, "layer": self.source, "index": str(self.unit),
                "description": self.explanation, "explanationModelName": self.explainer,
                "typeName": TYPE_NAMES.get(self.kind, self.kind), "scores": scores,
                "interp_widgets": {"kind": self.kind, "scores": self.scores.to_dict(),
                                   "meta": self.meta, "created": self.created}}

    @classmethod
    def from_neuronpedia(cls, d: dict[str, Any]) -> Entry:
        missing = [k for k in ("modelId", "layer", "index", "description") if k not in d]
        if missing:
            raise ValueError(f"Not a Neuronpedia explanation: missing {missing} in "
                             f"{sorted(d)[:8]}.")
        ours = d.get("interp_widgets") or {}
        if "scores" in ours:
            scores = Scores.from_dict(ours["scores"])
        else:
            scores = Scores.from_dict({s["explanationScoreTypeName"].removeprefix("iw_"):
                                       s.get("value") for s in d.get("scores") or []
                                       if "explanationScoreTypeName" in s})
        kind = ours.get("kind") or _KINDS.get(d.get("typeName", ""), "llm")
        return cls(str(d["modelId"]), str(d["layer"]), int(d["index"]),
                   str(d.get("explanationModelName") or "unknown"), kind, str(d["description"]),
                   scores, dict(ours.get("meta") or {}), float(ours.get("created") or 0.0))


def _nan_none(v: float) -> float | None:
    return None if v is None or (isinstance(v, float) and math.isnan(v)) else v


class AutoInterpStore:
    """A SQLite file of explanations and scores (see the module docstring). Created if missing;
    `migrated_from`: the schema_version it was migrated from on opening (None if it was not)."""

    def __init__(self, path: str | Path, *, timeout: float = 30.0):
        self.path = Path(path).expanduser()
        if self.path.is_dir():
            raise ValueError(f"{self.path} is a folder: give a file path such as "
                             f"{self.path / 'autointerp.sqlite'}.")
        self.timeout = timeout
        found = self._check() if self.path.exists() and self.path.stat().st_size else 0
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as con:
            if found < SCHEMA_VERSION:  # new, or an older version of ours: one transaction
                con.execute("BEGIN IMMEDIATE")
                try:
                    con.execute(f"PRAGMA application_id = {APP_ID}")
                    for stmt in _SCHEMA.split(";"):
                        if stmt.strip():
                            con.execute(stmt)
                    con.executemany("INSERT OR REPLACE INTO info VALUES (?, ?)",
                                    [("application", APPLICATION),
                                     ("schema_version", str(SCHEMA_VERSION))])
                    con.execute("COMMIT")
                except BaseException:
                    con.execute("ROLLBACK")
                    raise
            con.execute("PRAGMA journal_mode=WAL")
        self.migrated_from = found if 0 < found < SCHEMA_VERSION else None

    def _check(self) -> int:
        """The schema_version of the existing file at `path` (0: an empty SQLite file), found
        with reads only; StoreError when the file is not one of ours that this version can
        read."""
        where = f"{self.path}"
        try:
            # only reads go through this connection (a read-only URI connection would break
            # the shared memory of WAL writers in other connections)
            con = sqlite3.connect(self.path, timeout=self.timeout, isolation_level=None)
        except sqlite3.Error as err:
            raise StoreError(f"{where} cannot be opened: {err}.") from None
        try:
            app = con.execute("PRAGMA application_id").fetchone()[0]
            tables = sorted(r[0] for r in con.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table'"))
            check = con.execute("PRAGMA quick_check(1)").fetchone()[0]
            if check != "ok":
                raise sqlite3.DatabaseError(check)
            cols = tuple(r[1] for r in con.execute("PRAGMA table_info(explanations)"))
            info = dict(con.execute("SELECT key, value FROM info").fetchall()) \
                if "info" in tables else {}
        except sqlite3.DatabaseError as err:
            failure = StoreError(f"{where} is corrupt or not a database ({err}): it was left "
                                 "as it is; give another path or restore it from a copy.")
        else:
            failure = None
        finally:
            con.close()
        if failure is not None:
            # read only now: closing another descriptor of a database file would drop the
            # POSIX locks that this process's SQLite connections hold on it
            with open(self.path, "rb") as f:
                head = f.read(len(_SQLITE_HEADER))
            if head != _SQLITE_HEADER:
                raise StoreError(f"{where} is not an auto-interp store: it is not an SQLite "
                                 f"file (it starts with {head!r}). Give another path.")
            raise failure
        if app not in (0, APP_ID):
            raise StoreError(f"{where} belongs to another application (SQLite application_id "
                             f"{app:#010x}, tables {tables}); this store's files have "
                             f"{APP_ID:#010x}. Give another path.")
        if app == 0 and not tables:
            return 0  # an empty SQLite file: nothing in it to keep
        if "explanations" in tables and cols != COLUMNS:
            raise StoreError(f"{where} has an `explanations` table with columns {list(cols)}, "
                             f"not this store's {list(COLUMNS)}: it is not an auto-interp "
                             "store. Give another path.")
        version = info.get("schema_version")
        if app == 0 and (set(tables) != {"explanations", "info"} or version != "1"):
            raise StoreError(f"{where} is not an auto-interp store: no application_id, tables "
                             f"{tables}, schema_version {version!r}. Give another path.")
        try:
            found = int(version)
        except (TypeError, ValueError):
            raise StoreError(f"{where} has an auto-interp marker but schema_version "
                             f"{version!r} in its info table; it cannot be read.") from None
        if found > SCHEMA_VERSION:
            raise StoreError(f"{where} was written by a newer interp_widgets (store "
                             f"schema_version {found}; this version reads up to "
                             f"{SCHEMA_VERSION}): upgrade interp_widgets to open it.")
        if found < 1 or set(tables) < {"explanations", "info"}:
            raise StoreError(f"{where} has an auto-interp marker but schema_version {found} "
                             f"and tables {tables}; it cannot be read.")
        return found

    def __repr__(self) -> str:
        return f"AutoInterpStore({str(self.path)!r}, {len(self)} entries)"

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        """A connection; SQLite's errors come out as StoreError naming the file."""
        try:
            con = sqlite3.connect(self.path, timeout=self.timeout, isolation_level=None)
        except sqlite3.Error as err:
            raise StoreError(f"{self.path} cannot be opened: {err}.") from None
        failure: StoreError | None = None
        try:
            yield con
        except sqlite3.Error as err:
            failure = StoreError(f"{self.path}: {type(err).__name__}: {err}.")
        finally:
            con.close()
        if failure is not None:
            raise failure

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction (all or nothing)."""
        with self._connect() as con:
            con.execute("BEGIN IMMEDIATE")
            try:
                yield con
            except BaseException:
                con.execute("ROLLBACK")
                raise
            con.execute("COMMIT")

    # ---- writing ----

    def put(self, entries: Entry | Iterable[Entry]) -> int:
        """Insert or replace entries, all in one transaction. Returns how many."""
        entries = [entries] if isinstance(entries, Entry) else list(entries)
        rows = [self._row(e) for e in entries]
        _refuse_secrets(rows)
        with self._write() as con:
            con.executemany("INSERT OR REPLACE INTO explanations VALUES (?,?,?,?,?,?,?,?,?,?)",
                            rows)
        return len(rows)

    @staticmethod
    def _row(e: Entry) -> tuple:
        if e.kind not in TYPE_NAMES:
            raise ValueError(f"kind must be one of {sorted(TYPE_NAMES)}; got {e.kind!r}.")
        text, cut_from = normalize_explanation(e.explanation)
        meta = dict(e.meta)
        if cut_from:
            meta.setdefault("explanation_cut_from", cut_from)
        return (safe_text(e.model), safe_text(e.source), int(e.unit), safe_text(e.explainer),
                e.kind, text, json.dumps(e.scores.to_dict()), _nan_none(e.scores.correlation),
                json.dumps(meta, default=str), e.created or time.time())

    def delete(self, *, model: str | None = None, source: str | None = None,
               unit: int | None = None, explainer: str | None = None) -> int:
        """Delete the matching entries; returns how many."""
        where, args = _where(model, source, unit, explainer, None)
        with self._write() as con:
            return con.execute(f"DELETE FROM explanations{where}", args).rowcount

    # ---- reading ----

    def __len__(self) -> int:
        with self._connect() as con:
            return con.execute("SELECT COUNT(*) FROM explanations").fetchone()[0]

    def entries(self, *, model: str | None = None, source: str | None = None,
                unit: int | None = None, explainer: str | None = None,
                search: str | None = None) -> list[Entry]:
        """Entries matching every given field; `search`: a case-insensitive substring of the
        explanation. Ordered by model, source, unit, explainer."""
        where, args = _where(model, source, unit, explainer, search)
        with self._connect() as con:
            rows = con.execute(f"SELECT * FROM explanations{where} ORDER BY model, source, unit, "
                               "explainer", args).fetchall()
        return [_entry(r) for r in rows]

    def get(self, model: str, source: str, unit: int, explainer: str | None = None
            ) -> Entry | None:
        """The entry of one unit (with `explainer`, or the best-scoring one); None if absent."""
        found = self.entries(model=model, source=source, unit=unit, explainer=explainer)
        if not found:
            return None
        return max(found, key=lambda e: (not math.isnan(e.score), e.score if not
                                         math.isnan(e.score) else 0.0, e.created))

    def frame(self, **filters: Any):
        """A pandas DataFrame: one row per entry (`Entry.row`)."""
        import pandas as pd

        rows = [e.row() for e in self.entries(**filters)]
        return pd.DataFrame(rows, columns=["model", "source", "unit", "explainer", "kind",
                                           "explanation", *SCORE_COLUMNS])

    # ---- JSON ----

    def export_json(self, path: str | Path, **filters: Any) -> Path:
        """Write the (matching) entries as a JSON list in Neuronpedia's shape; ``.jsonl``
        writes one object per line. Atomic (temporary file, then rename)."""
        path = Path(path).expanduser()
        items = [e.neuronpedia() for e in self.entries(**filters)]
        if path.suffix == ".jsonl":
            text = "".join(json.dumps(i, allow_nan=False) + "\n" for i in items)
        else:
            text = json.dumps(items, indent=1, allow_nan=False)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(text)
        os.replace(tmp, path)
        return path

    def import_json(self, path: str | Path) -> int:
        """Read a JSON list / JSONL file of Neuronpedia-shaped explanations (ours, Neuronpedia's
        explanation export, or its feature records with an ``explanations`` list) into the
        store, in one transaction. Returns how many."""
        path = Path(path).expanduser()
        text = path.read_text()
        if path.suffix == ".jsonl":
            items = [json.loads(line) for line in text.splitlines() if line.strip()]
        else:
            items = json.loads(text)
            items = [items] if isinstance(items, dict) else items
        return self.put([Entry.from_neuronpedia(d) for d in _flatten(items)])


def _flatten(items: Iterable[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """Explanation records; a feature record of Neuronpedia's API (``modelId``, ``layer``,
    ``index`` and an ``explanations`` list) gives one per explanation."""
    for d in items:
        if isinstance(d.get("explanations"), list) and "description" not in d:
            for e in d["explanations"]:
                yield {k: d[k] for k in ("modelId", "layer", "index") if k in d} | e
        else:
            yield d


def _where(model, source, unit, explainer, search) -> tuple[str, list[Any]]:
    conds, args = [], []
    for col, v in (("model", model), ("source", source), ("unit", unit),
                   ("explainer", explainer)):
        if v is not None:
            conds.append(f"{col} = ?")
            args.append(v)
    if search:
        conds.append("instr(lower(explanation), lower(?)) > 0")
        args.append(search)
    return (" WHERE " + " AND ".join(conds) if conds else ""), args


def _entry(r: Sequence[Any]) -> Entry:
    model, source, unit, explainer, kind, text, scores, _, meta, created = r
    return Entry(model, source, int(unit), explainer, kind, text,
                 Scores.from_dict(json.loads(scores)), json.loads(meta), float(created))


def _refuse_secrets(rows: Sequence[tuple]) -> None:
    key = os.environ.get("OPENAI_API_KEY") or ""
    if len(key) >= 8 and any(key in str(v) for row in rows for v in row):
        raise ValueError("Refusing to store an entry that contains the OPENAI_API_KEY value: "
                         "API keys are never written to the store.")
