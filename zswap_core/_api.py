"""The version of the driver API that plugins are written against."""

from __future__ import annotations

__all__ = ["API_VERSION", "SUPPORTED_API_VERSIONS"]

#: Bumped when the Compressor or Zpool contract changes incompatibly. A plugin sets
#: ``api_version`` on its driver class to the version it was written for.
API_VERSION = 1

#: The API versions this core can load.
SUPPORTED_API_VERSIONS = frozenset({1})
