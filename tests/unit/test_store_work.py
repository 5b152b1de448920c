"""The unit of work's per-process caching (roost/store/work.py): the schema head and the
engine are made once, and the schema check still refuses, at every transaction, a store
that is not this Roost's; a missing file is never created, and a replaced one is not read
through the old file's connections."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from sqlalchemy import text

from roost.settings import Settings, load_settings
from roost.store import work
from roost.store.db import Store, StoreError
from roost.store.models import Domain


def make_settings(tmp_path: Path) -> Settings:
    env = tmp_path / "mailu.env"
    env.write_text(
        f"ROOT={tmp_path / 'root'}\nDOMAIN=work.test\nHOSTNAMES=mail.work.test\n"
        "SECRET_KEY=work-secret-0123456789\n"
    )
    return load_settings(env_file=env, environ={})


def initialise(settings: Settings, domain: str) -> None:
    store = Store.from_settings(settings)
    try:
        store.upgrade()
        with store.session() as session:
            session.add(Domain(name=domain))
    finally:
        store.dispose()


def domains(settings: Settings) -> list[str]:
    with work.read(settings) as db:
        return sorted(d.name for d in db.query(Domain))


def set_revision(settings: Settings, revision: str) -> None:
    store = Store.from_settings(settings)
    try:
        with store.session() as session:
            session.execute(text("UPDATE alembic_version SET version_num = :r"), {"r": revision})
    finally:
        store.dispose()


def test_a_read_opens_neither_the_scripts_nor_a_new_engine(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = make_settings(tmp_path)
    initialise(settings, "one.test")
    assert domains(settings) == ["one.test"]
    opened: list[str] = []
    monkeypatch.setattr(work.ScriptDirectory, "from_config", lambda *a: opened.append("scripts"))
    real = Store.from_settings.__func__  # type: ignore[attr-defined]
    monkeypatch.setattr(
        Store, "from_settings", classmethod(lambda cls, s: opened.append("engine") or real(cls, s))
    )
    for _ in range(5):
        assert domains(settings) == ["one.test"]
        with work.change(settings) as db:
            db.get(Domain, "one.test")
    assert opened == []


def test_a_store_migrated_meanwhile_is_refused_at_the_next_transaction(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    initialise(settings, "one.test")
    head = work.schema_head()
    assert domains(settings) == ["one.test"]  # the engine is kept from here on
    set_revision(settings, "0000")
    with pytest.raises(StoreError, match=f"has schema 0000, this Roost needs {head}: run roost"):
        domains(settings)
    with pytest.raises(StoreError, match="has schema 0000"), work.change(settings):
        pytest.fail("a change must not start on a store of another schema")
    set_revision(settings, str(head))
    assert domains(settings) == ["one.test"]


def test_a_missing_store_is_refused_and_not_created(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    with pytest.raises(StoreError, match="is not initialised: run roost init first"):
        domains(settings)
    assert not (tmp_path / "root").exists()
    database = tmp_path / "root" / "data" / "main.db"
    database.parent.mkdir(parents=True)
    database.touch()
    with pytest.raises(StoreError, match="is not initialised: run roost init first"):
        domains(settings)


def test_a_replaced_store_is_read_through_new_connections(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    initialise(settings, "old.test")
    assert domains(settings) == ["old.test"]
    shutil.rmtree(tmp_path / "root")
    with pytest.raises(StoreError, match="is not initialised"):
        domains(settings)
    initialise(settings, "new.test")
    assert domains(settings) == ["new.test"]
