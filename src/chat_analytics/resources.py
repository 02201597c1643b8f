"""How much memory DuckDB may use and where it spills: one choice for every step of the pipeline.

DuckDB's default memory limit is 80 % of the machine's RAM, and a 100-million-chat build left to that
default grows towards it. The pipeline caps every DuckDB it opens (ingest, the dbt build through the
profile, publish) at `CHAT_ANALYTICS_MEMORY_LIMIT` (default: the smaller of 5 GB and half the RAM),
and spills what does not fit to `<home>/warehouse/spill` (`CHAT_ANALYTICS_SPILL_DIR` overrides), on the
same disk as the warehouse and removed by `make clean` with it. With the Python process around it, a
step then peaks well under 8 GB (README, performance section). chat_analytics.duck applies them to
every connection the package opens; `dbt_env` hands them to the dbt profile.
"""

from __future__ import annotations

import os
from pathlib import Path

from chat_analytics.paths import Home

MEMORY_LIMIT_ENV = "CHAT_ANALYTICS_MEMORY_LIMIT"
SPILL_DIR_ENV = "CHAT_ANALYTICS_SPILL_DIR"
DEFAULT_CEILING_BYTES = 5 * 1024**3


def memory_limit() -> str:
    """`$CHAT_ANALYTICS_MEMORY_LIMIT` (any DuckDB size, e.g. `6GB`), else min(5 GB, half the RAM)."""
    chosen = os.environ.get(MEMORY_LIMIT_ENV, "").strip()
    if chosen:
        return chosen
    try:
        ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError):  # not available on this platform: the ceiling alone
        ram = 2 * DEFAULT_CEILING_BYTES
    return f"{min(DEFAULT_CEILING_BYTES, ram // 2) // 1024**2}MB"


def spill_dir(home: Home) -> Path:
    """`$CHAT_ANALYTICS_SPILL_DIR`, else `<home>/warehouse/spill`."""
    chosen = os.environ.get(SPILL_DIR_ENV, "").strip()
    return Path(chosen).expanduser().resolve() if chosen else home.warehouse_dir / "spill"


def dbt_env(home: Home) -> dict[str, str]:
    """The environment the dbt profile reads its memory limit and spill folder from."""
    return {MEMORY_LIMIT_ENV: memory_limit(), SPILL_DIR_ENV: str(spill_dir(home))}
