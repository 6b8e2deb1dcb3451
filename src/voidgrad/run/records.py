"""The history of a run: one dataclass record per step, oldest first, with column access."""

from __future__ import annotations

from dataclasses import asdict, fields
from typing import Any, ClassVar, Generic, TypeVar

Record = TypeVar("Record")


class Records(list[Record], Generic[Record]):
    """Dataclass records of a run, oldest first, with column access."""

    record_type: ClassVar[type]

    def column(self, name: str) -> list[Any]:
        """One field over all records, e.g. ``history.column("best")``."""
        names = [f.name for f in fields(self.record_type)]
        if name not in names:
            raise ValueError(f"unknown column {name!r}; columns: {names}")
        return [getattr(record, name) for record in self]

    def to_dicts(self) -> list[dict[str, Any]]:
        """The records as plain dicts (for JSON and checkpoints)."""
        return [asdict(record) for record in self]  # type: ignore[call-overload]

    def to_dataframe(self) -> Any:
        """A pandas DataFrame with one row per record (``pip install 'voidgrad[pandas]'``)."""
        try:
            import pandas
        except ImportError as error:
            raise ImportError(
                "to_dataframe needs pandas, the 'pandas' extra: pip install 'voidgrad[pandas]' "
                "(or pip install pandas); column(name) and to_dicts() need nothing"
            ) from error
        return pandas.DataFrame(self.to_dicts())
