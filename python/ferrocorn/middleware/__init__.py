"""ASGI middleware the server wraps around an app, as in `uvicorn.middleware`."""
