"""AutoInterpStore opens only its own files: real SQLite files made here (a foreign
application's, one with another `explanations` table, a newer version's, a corrupt one, a text
file) are refused with the path and what was found, byte for byte unchanged; a file written by
the store's first version (its DDL replicated from main at d6f65a8) is migrated."""

from __future__ import annotations

import hashlib
import json
import sqlite3
from pathlib import Path

import pytest

from interp_widgets import autointerp as ai
from interp_widgets.autointerp.score import Scores
from interp_widgets.autointerp.store import APP_ID, COLUMNS, SCHEMA_VERSION

# the schema of version 1 (interp_widgets/autointerp/store.py before the marker), verbatim
V1_SCHEMA = """
CREATE TABLE IF NOT EXISTS explanations (
    model TEXT NOT NULL, source TEXT NOT NULL, unit INTEGER NOT NULL, explainer TEXT NOT NULL,
    kind TEXT NOT NULL, explanation TEXT NOT NULL, scores TEXT NOT NULL, score REAL,
    meta TEXT NOT NULL, created REAL NOT NULL,
    PRIMARY KEY (model, source, unit, explainer));
CREATE TABLE IF NOT EXISTS info (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


def _digest(path: Path) -> str:
    """A hash of the file and of any -wal / -journal next to it."""
    h = hashlib.sha256(path.read_bytes())
    for suffix in ("-wal", "-journal"):
        side = path.with_name(path.name + suffix)
        if side.exists():
            h.update(side.read_bytes())
    return h.hexdigest()


def _make(path: Path, script: str, *, app_id: int = 0, wal: bool = False) -> Path:
    con = sqlite3.connect(path)
    if wal:
        con.execute("PRAGMA journal_mode=WAL")
    if app_id:
        con.execute(f"PRAGMA application_id = {app_id}")
    con.executescript(script)
    con.commit()
    con.close()
    return path


def _refused(path: Path, *needles: str) -> str:
    """Opening `path` raises StoreError naming it and `needles`; the file (header included:
    journal mode, application id) is byte for byte as before, and no file is added beside it
    except SQLite's own -wal/-shm of a file already in WAL mode."""
    before, files = _digest(path), set(path.parent.iterdir())
    with pytest.raises(ai.StoreError) as info:
        ai.AutoInterpStore(path)
    msg = str(info.value)
    assert str(path) in msg, msg
    for needle in needles:
        assert needle in msg, msg
    assert _digest(path) == before
    added = {p.name for p in set(path.parent.iterdir()) - files}
    assert added <= {path.name + "-wal", path.name + "-shm"}, added
    if path.read_bytes()[18:20] != b"\x02\x02":  # not in WAL mode: nothing at all added
        assert not added, added
    return msg


def test_a_foreign_application_file_is_refused_untouched(tmp_path):
    path = _make(tmp_path / "notes.sqlite", "CREATE TABLE notes (id INTEGER, body TEXT);"
                 "INSERT INTO notes VALUES (1, 'keep me');")
    _refused(path, "not an auto-interp store", "['notes']")
    other = _make(tmp_path / "app.db", "CREATE TABLE t (x);", app_id=0x12345678)
    _refused(other, "another application", "0x12345678")


def test_another_explanations_table_is_refused(tmp_path):
    path = _make(tmp_path / "x.sqlite", "CREATE TABLE explanations (id INTEGER, text TEXT);"
                 "INSERT INTO explanations VALUES (1, 'theirs');")
    _refused(path, "columns ['id', 'text']", "model")


def test_a_newer_version_is_refused(tmp_path):
    path = tmp_path / "new.sqlite"
    ai.AutoInterpStore(path).put(ai.Entry("m", "h", 1, "x", "llm", "apples"))
    con = sqlite3.connect(path)
    con.execute("UPDATE info SET value = '99' WHERE key = 'schema_version'")
    con.commit()
    con.close()
    _refused(path, "newer", "schema_version 99", f"up to {SCHEMA_VERSION}")


def test_corrupt_and_non_sqlite_files_are_refused(tmp_path):
    text = tmp_path / "readme.sqlite"
    text.write_text("hello, I am a text file\n" * 10)
    _refused(text, "not an SQLite file", "b'hello, I am a te")
    path = tmp_path / "broken.sqlite"
    store = ai.AutoInterpStore(path)
    store.put([ai.Entry("m", "h", u, "x", "llm", "word " * 50) for u in range(200)])
    con = sqlite3.connect(path)
    con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    con.close()
    data = bytearray(path.read_bytes())
    assert len(data) > 4 * 4096
    data[4096:3 * 4096] = b"\xff" * (2 * 4096)  # garble pages 2 and 3, keep the header
    path.write_bytes(bytes(data))
    _refused(path, "corrupt")


def test_a_version_1_file_is_migrated(tmp_path):
    path = _make(tmp_path / "old.sqlite", V1_SCHEMA, wal=True)
    scores = Scores(correlation=0.25, n_records=10, simulator="offline-statistical")
    con = sqlite3.connect(path)
    con.execute("INSERT OR IGNORE INTO info VALUES ('schema_version', '1')")
    con.execute("INSERT INTO explanations VALUES (?,?,?,?,?,?,?,?,?,?)",
                ("demo", "blocks.0.mlp.hook_post", 7, "offline-statistical", "statistical",
                 "apples", json.dumps(scores.to_dict()), 0.25, json.dumps({"n_explain": 5}),
                 123.0))
    con.commit()
    con.close()
    store = ai.AutoInterpStore(path)
    assert store.migrated_from == 1
    (e,) = store.entries()
    assert (e.unit, e.explanation, e.score, e.meta, e.created) == (7, "apples", 0.25,
                                                                   {"n_explain": 5}, 123.0)
    con = sqlite3.connect(path)
    assert con.execute("PRAGMA application_id").fetchone()[0] == APP_ID
    info = dict(con.execute("SELECT key, value FROM info"))
    assert info["schema_version"] == str(SCHEMA_VERSION)
    assert info["application"] == "interp_widgets.autointerp"
    con.close()
    again = ai.AutoInterpStore(path)  # now an up-to-date file: opened as is
    assert again.migrated_from is None and len(again) == 1


def test_new_and_empty_files_get_the_marker(tmp_path):
    empty = tmp_path / "empty.sqlite"
    sqlite3.connect(empty).close()  # a zero-byte file
    blank = _make(tmp_path / "blank.sqlite", "CREATE TABLE t (x); DROP TABLE t;")
    for path in (tmp_path / "sub" / "new.sqlite", empty, blank):
        store = ai.AutoInterpStore(path)
        store.put(ai.Entry("m", "h", 1, "x", "llm", "apples"))
        con = sqlite3.connect(path)
        assert con.execute("PRAGMA application_id").fetchone()[0] == APP_ID
        cols = tuple(r[1] for r in con.execute("PRAGMA table_info(explanations)"))
        con.close()
        assert cols == COLUMNS and len(ai.AutoInterpStore(path)) == 1


def test_errors_after_opening_name_the_file(tmp_path):
    path = tmp_path / "s.sqlite"
    store = ai.AutoInterpStore(path)
    con = sqlite3.connect(path)
    con.execute("DROP TABLE explanations")
    con.commit()
    con.close()
    with pytest.raises(ai.StoreError, match=f"{path}.*no such table"):
        store.entries()
