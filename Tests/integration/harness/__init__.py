"""Test harness for credproxy's end-to-end tests: real sockets, real TLS, real processes.

Modules:
- ``certs``    — a throwaway CA and server certificates made with ``cryptography``.
- ``upstream`` — a threaded HTTP/1.1 upstream (TLS or plain) that records what it saw on the wire.
- ``rawhttp``  — a raw-socket HTTP/1.1 client: send exact bytes, parse the response strictly.
- ``proxy``    — start/stop the credproxy binary with a config, find its port, read its stderr.
- ``data``     — deterministic byte streams generated on the fly, and their hashes.
- ``secret_values`` — the secret values the tests give the proxy, which must never be printed.
"""
