"""Where things live under a chat-analytics home folder."""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path

HOME_ENV = "CHAT_ANALYTICS_HOME"
DEFAULT_HOME = Path("data")
PROJECT_ROOT = Path(__file__).resolve().parents[2]
DBT_PROJECT_DIR = PROJECT_ROOT / "dbt"
# What analysts read under serving/ (names of the links into the current release), and inside it.
SERVING_DATABASE = "analytics.duckdb"
SERVING_PARQUET = "parquet"
#: The warehouse schema dbt builds the marts in (`+schema: analytics`, dbt_project.yml).
WAREHOUSE_SCHEMA = "analytics"
#: The published file holds them in DuckDB's default schema: its catalog is named after the file
#: (`analytics`), so `from fct_chats` and `from analytics.fct_chats` both resolve with nothing typed
#: first (a schema `analytics` inside `analytics.duckdb` would make the second one ambiguous).
SERVING_SCHEMA = "main"
BUILD_INFO = "_build_info"  # the published file's table saying which run, data and tests it holds


class UserError(Exception):
    """A problem with the user's input or environment; shown as one clear line, never a traceback."""


@dataclass(frozen=True)
class Home:
    """The folders and files of one chat-analytics home."""

    root: Path

    @classmethod
    def resolve(cls, home: str | os.PathLike[str] | None = None) -> Home:
        """`--home` if given, else `$CHAT_ANALYTICS_HOME`, else `./data`."""
        chosen = home or os.environ.get(HOME_ENV) or DEFAULT_HOME
        return cls(Path(chosen).expanduser().resolve())

    @property
    def landing(self) -> Path:
        return self.root / "landing"

    @property
    def landing_chats(self) -> Path:
        return self.landing / "chats"

    @property
    def landing_categories(self) -> Path:
        return self.landing / "categories"

    @property
    def warehouse_dir(self) -> Path:
        return self.root / "warehouse"

    @property
    def warehouse(self) -> Path:
        return self.warehouse_dir / "warehouse.duckdb"

    @property
    def serving(self) -> Path:
        return self.root / "serving"

    @property
    def serving_database(self) -> Path:
        """What analysts open: the published marts (a link into the current release)."""
        return self.serving / SERVING_DATABASE

    @property
    def serving_parquet(self) -> Path:
        """The published marts as Parquet (a link into the current release)."""
        return self.serving / SERVING_PARQUET

    @property
    def report(self) -> Path:
        return self.serving / "report.html"

    @property
    def docs(self) -> Path:
        """The dbt docs site, one offline file."""
        return self.serving / "docs" / "index.html"

    def ensure_landing(self) -> None:
        """Create the landing folders (used by `generate`)."""
        self.landing_chats.mkdir(parents=True, exist_ok=True)
        self.landing_categories.mkdir(parents=True, exist_ok=True)

    def require_landing(self) -> None:
        """Stop with a clear error when the home or its landing folders are missing or unreadable."""
        for folder in (self.root, self.landing, self.landing_chats, self.landing_categories):
            try:
                mode = folder.stat().st_mode
            except FileNotFoundError:
                if folder == self.root:
                    raise UserError(
                        f"home folder {self.root} does not exist: pass --home DIR or set {HOME_ENV}, "
                        "or run `chat-analytics generate` to create sample data"
                    ) from None
                raise UserError(
                    f"landing folder {folder} does not exist: create it and drop extracts into it, "
                    "or run `chat-analytics generate`"
                ) from None
            except OSError as exc:
                raise UserError(f"cannot reach {folder}: {exc.strerror or exc}; check the path") from None
            if not stat.S_ISDIR(mode):
                raise UserError(f"{folder} is not a folder: it must be a folder (move the file away)")
            try:
                with os.scandir(folder):
                    pass
            except OSError as exc:
                raise UserError(
                    f"cannot read the folder {folder}: {exc.strerror or exc}; "
                    "make it a folder this user may list and read"
                ) from None
