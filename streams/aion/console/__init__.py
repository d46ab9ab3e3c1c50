"""The web console (``aion console``): workflows, schedules, dead letters and events in a
browser, served by aiohttp from this process and talking to Kafka through
:class:`~aion.client.Client` only.

The pages are rendered on the server; a little script re-fetches the live parts. The console
has no authentication yet: it listens on 127.0.0.1 unless told otherwise.

```python
from aion.client import Client
from aion.console import make_app

client = await Client.connect("127.0.0.1:9092")
app = make_app(client)            # an aiohttp.web.Application; the caller closes the client
```
"""

from ._app import PageError, make_app

__all__ = ["make_app", "PageError"]
