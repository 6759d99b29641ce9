"""Tables, engine, migrations and database-error translation."""

from predictd.db.engine import Database, to_async_url, to_display_url
from predictd.db.tables import metadata, model_versions, predictions

__all__ = [
    "Database",
    "metadata",
    "model_versions",
    "predictions",
    "to_async_url",
    "to_display_url",
]
