"""A failing dbt node is named where the failure shows: in `build`'s result and so in the pytest message.

A copy of the dbt project gets one unit test whose expectation is wrong on purpose; `build --unit-tests`
on a small home must fail with that unit test and dbt's message, not with a table missing downstream.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from chat_analytics.cli import main as cli_main
from chat_analytics.paths import DBT_PROJECT_DIR, Home
from chat_analytics.pipeline.build import build
from chat_analytics.pipeline.build_record import BuildRecord

BROKEN = "broken_on_purpose"


def _project_with_a_broken_unit_test(folder: Path) -> Path:
    """A copy of the dbt project plus one unit test: an existing one's whose first expected row is wrong."""
    project = folder / "dbt"
    shutil.copytree(
        DBT_PROJECT_DIR,
        project,
        symlinks=True,
        ignore=shutil.ignore_patterns("target", "logs", "dbt_packages"),
    )
    source = project / "models" / "staging" / "_staging__models.yml"
    unit_test = dict(yaml.safe_load(source.read_text(encoding="utf-8"))["unit_tests"][0])
    header, first, *rest = unit_test["expect"]["rows"].strip().splitlines()
    first = ",".join(["not-this-chat", *first.split(",")[1:]])
    unit_test.update(name=BROKEN, expect={**unit_test["expect"], "rows": "\n".join([header, first, *rest])})
    (source.parent / "_broken_unit_test.yml").write_text(
        yaml.safe_dump({"version": 2, "unit_tests": [unit_test]}, sort_keys=False), encoding="utf-8"
    )
    return project


def test_a_failing_unit_test_is_named_in_the_assertion_message(tmp_path: Path) -> None:
    home = Home(tmp_path / "home")
    small = ["--chats", "300", "--start", "2000-03-20", "--end", "2000-03-27"]
    assert cli_main(["generate", "--home", str(home.root), *small]) == 0
    assert cli_main(["ingest", "--home", str(home.root)]) == 0
    project = _project_with_a_broken_unit_test(tmp_path)

    result = build(home, unit_tests=True, project_dir=project)

    assert result == 1
    failed = [line for line in result.failures if BROKEN in line]
    assert failed, result.failures
    assert failed[0].startswith(f"fail unit test stg_raw__chats.{BROKEN}")
    assert "actual differs from expected" in failed[0]  # dbt's own message, with its diff
    assert not any("does not exist" in line for line in result.failures), result.failures
    # what a test asserting a green build shows when it is not: the node and dbt's message
    with pytest.raises(AssertionError) as caught:
        assert result == 0
    assert f"unit test stg_raw__chats.{BROKEN}" in str(caught.value)
    assert "actual differs from expected" in str(caught.value)
    # the record keeps dbt's whole message for the node too
    node = next(n for uid, n in BuildRecord.load(home).nodes.items() if uid.endswith(BROKEN))
    assert node["status"] == "fail" and "not-this-chat" in node["message"]
