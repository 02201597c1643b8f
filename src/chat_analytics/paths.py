"""Where things live under a chat-analytics home folder."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

HOME_ENV = "CHAT_ANALYTICS_HOME"
DEFAULT_HOME = Path("data")
PROJECT_ROOT = Path(__file__).resolve().parents[2]
DBT_PROJECT_DIR = PROJECT_ROOT / "dbt"


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

    def ensure_landing(self) -> None:
        """Create the landing folders (used by `generate`)."""
        self.landing_chats.mkdir(parents=True, exist_ok=True)
        self.landing_categories.mkdir(parents=True, exist_ok=True)

    def require_landing(self) -> None:
        """Stop with a clear error when the home or its landing folders are missing."""
        if not self.root.is_dir():
            raise UserError(
                f"home folder {self.root} does not exist: pass --home DIR or set {HOME_ENV}, "
                "or run `chat-analytics generate` to create sample data"
            )
        for folder in (self.landing_chats, self.landing_categories):
            if not folder.is_dir():
                raise UserError(
                    f"landing folder {folder} does not exist: create it and drop extracts into it, "
                    "or run `chat-analytics generate`"
                )
