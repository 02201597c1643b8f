"""The dbt project's vars (`dbt/dbt_project.yml`) that Python needs too: one place for each rule.

`local_timezone` (the zone of every local date and hour) and `quarantine_reasons` (the reason codes in
their order of precedence) are defined once, as dbt vars; the models, macros and tests read them with
`var(...)`, and the generator, publish and the report read them here. Changing the var changes all.
"""

from __future__ import annotations

from functools import cache
from typing import Any

import yaml  # PyYAML: a dependency of dbt-core, which reads the same file

from chat_analytics.paths import DBT_PROJECT_DIR

PROJECT_FILE = DBT_PROJECT_DIR / "dbt_project.yml"


@cache
def project_vars() -> dict[str, Any]:
    """The `vars:` of dbt_project.yml (read once per process)."""
    document = yaml.safe_load(PROJECT_FILE.read_text(encoding="utf-8"))
    found = document.get("vars") if isinstance(document, dict) else None
    if not isinstance(found, dict):
        raise ValueError(f"{PROJECT_FILE} has no `vars:` mapping")
    return found


def local_timezone() -> str:
    """The IANA zone of every local date, hour and weekday (var `local_timezone`)."""
    return str(project_vars()["local_timezone"])


def quarantine_reasons() -> tuple[str, ...]:
    """The quarantine reason codes, in their order of precedence (var `quarantine_reasons`)."""
    return tuple(str(reason) for reason in project_vars()["quarantine_reasons"])
