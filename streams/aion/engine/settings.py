"""Settings of Aion Streams processes — kept for code that imports them from here; they live
in :mod:`aion.common.settings`.

```python
from aion.common.settings import Settings
settings = Settings.from_env(topic_prefix="shop")   # env, then overrides
settings.confluent_config()                         # {"bootstrap.servers": ..., security ...}
```

``Settings.describe()`` lists every setting with its variable, default and meaning.
"""

from ..common.settings import Settings, SettingsError

__all__ = ["Settings", "SettingsError"]
