"""acme-consumer: calls into libacme, which the acme-native wheel provides."""

from acme_consumer._core import add, series, version

__all__ = ["add", "series", "version"]
