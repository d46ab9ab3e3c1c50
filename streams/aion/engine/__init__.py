"""The engine: the Faust engine worker and its parts.

Importing ``aion.engine`` (or ``aion.engine.settings`` / ``aion.engine.topics``, which re-export
:mod:`aion.common`) never imports Faust. The Faust app lives in ``aion.engine.worker`` and is
imported only when a worker runs.
"""

from ..common.settings import Settings, SettingsError

__all__ = ["Settings", "SettingsError"]
