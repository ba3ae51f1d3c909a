"""A Django project in one module, served through Channels' ProtocolTypeRouter: async views, a
streamed response from an async iterator, a file, a large POST body, and a WebSocket consumer.

The file served is named by FERROCORN_TEST_FILE."""

import asyncio
import hashlib
import os

import django
from django.conf import settings

settings.configure(
    DEBUG=False,
    SECRET_KEY="ferrocorn-tests",
    ROOT_URLCONF=__name__,
    ALLOWED_HOSTS=["*"],
    INSTALLED_APPS=[],
    MIDDLEWARE=[],
    DATA_UPLOAD_MAX_MEMORY_SIZE=None,  # the upload test posts megabytes
    USE_TZ=True,
)
django.setup()

from channels.generic.websocket import AsyncWebsocketConsumer  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.core.asgi import get_asgi_application  # noqa: E402
from django.http import FileResponse, JsonResponse, StreamingHttpResponse  # noqa: E402
from django.urls import path  # noqa: E402


async def hello(request):
    return JsonResponse({"framework": "django", "method": request.method, "http": request.scope["http_version"]})


async def stream(request):
    async def chunks():
        for i in range(5):
            await asyncio.sleep(0.01)
            yield f"chunk {i}\n"

    return StreamingHttpResponse(chunks(), content_type="text/plain")


def file(request):
    return FileResponse(open(os.environ["FERROCORN_TEST_FILE"], "rb"))  # noqa: SIM115 (FileResponse closes it)


async def upload(request):
    body = request.body
    return JsonResponse({"length": len(body), "sha256": hashlib.sha256(body).hexdigest()})


class EchoConsumer(AsyncWebsocketConsumer):
    async def receive(self, text_data=None, bytes_data=None):
        if text_data is not None:
            await self.send(text_data=f"django: {text_data}")
        else:
            await self.send(bytes_data=bytes_data)


urlpatterns = [
    path("hello", hello),
    path("stream", stream),
    path("file", file),
    path("upload", upload),
]

app = ProtocolTypeRouter(
    {
        "http": get_asgi_application(),
        "websocket": URLRouter([path("ws/echo", EchoConsumer.as_asgi())]),
    }
)
