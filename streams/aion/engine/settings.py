"""Settings of Aion Streams processes: ``Settings.from_env()`` reads the ``AION_*`` variables.

```python
from aion.engine.settings import Settings
settings = Settings.from_env(topic_prefix="shop")   # env, then overrides
settings.confluent_config()                         # {"bootstrap.servers": ..., security ...}
```

``Settings.describe()`` lists every setting with its variable, default and meaning.
"""

from ._settings import Settings, SettingsError

__all__ = ["Settings", "SettingsError"]

