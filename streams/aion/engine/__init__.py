"""The engine: settings, topic administration and the Faust engine worker.

Importing ``aion.engine`` (or ``aion.engine.settings`` / ``aion.engine.topics``) never imports
Faust: clients and activity workers use the settings and topic names without the engine.
The Faust app lives in ``aion.engine.worker`` and is imported only when a worker runs.
"""

from .settings import Settings, SettingsError

__all__ = ["Settings", "SettingsError"]
