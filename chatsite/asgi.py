"""ASGI entry point: HTTP through Django, WebSockets through Channels (in the documented order)."""

from __future__ import annotations

import os
import sys

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chatsite.settings")
django_asgi_app = get_asgi_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402

from chat import fanout, twisted_writes  # noqa: E402
from chat.consumers import DirectSend  # noqa: E402
from chat.routing import websocket_urlpatterns  # noqa: E402
from chatsite import serve  # noqa: E402

application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        "websocket": DirectSend(
            AllowedHostsOriginValidator(AuthMiddlewareStack(URLRouter(websocket_urlpatterns)))
        ),
    }
)

if "daphne.server" in sys.modules:
    # A worker sweeps for replies left by dead workers as soon as it serves, not at its first request.
    fanout.start_when_serving()
    # Its sockets send each frame at once rather than on the reactor's next turn.
    twisted_writes.install()
    serve.report_event_loop()
