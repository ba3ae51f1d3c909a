"""Helpers shared by the black-box tests: ``server`` (the server subprocess), ``raw`` (raw-socket HTTP/1.x and
WebSocket clients), ``h2`` (HTTP/2 clients on the same raw socket), ``probes`` (what the router app records)."""
