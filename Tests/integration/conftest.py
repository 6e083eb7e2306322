"""Fixtures for credproxy's end-to-end tests.

Everything is real and local: a CA made here, a TLS upstream on 127.0.0.1, the credproxy binary
started as a process, clients talking over sockets. Run with ``python3 -m pytest Tests/integration -q``.

The binary is ``$CREDPROXY_BIN`` when set, else ``<repo>/.build/release/credproxy``.
"""

from __future__ import annotations

import resource
import signal
import socket
import uuid
from pathlib import Path

import pytest

from harness import secret_values
from harness.secret_values import SecretGuard
from harness.certs import PKI, make_pki
from harness.proxy import ProxyProcess, ProxyStartError, binary_path, clean_env, render, run_cli
from harness.upstream import UpstreamServer

# Hundreds of concurrent client sockets, plus the upstream's side of the proxy's connections.
_soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
_want = 65536 if _hard == resource.RLIM_INFINITY else min(_hard, 65536)
if _soft != resource.RLIM_INFINITY and _soft < _want:
    resource.setrlimit(resource.RLIMIT_NOFILE, (_want, _hard))

DEFAULT_TEST_TIMEOUT = 120.0


# -- per-test timeout (no pytest-timeout here): SIGALRM in the main thread ------------------------

class TestTimeout(Exception):
    pass


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "timeout(seconds): fail the test after this many seconds")
    config.addinivalue_line("markers", "slow: a test that moves a lot of data or opens many sockets")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item: pytest.Item):
    marker = item.get_closest_marker("timeout")
    seconds = float(marker.args[0]) if marker else DEFAULT_TEST_TIMEOUT

    def on_alarm(signum, frame):  # noqa: ARG001
        raise TestTimeout(f"test exceeded its {seconds:.0f}s timeout")

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


# -- PKI and upstreams ---------------------------------------------------------------------------

@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PKI:
    """A test CA with a server certificate for localhost/127.0.0.1, and a rogue CA nobody trusts."""
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="session")
def upstream(pki: PKI):
    """The HTTPS upstream the proxy forwards to, trusted through ``ca-file``."""
    server = UpstreamServer("main", pki.server.server_context()).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def untrusted_upstream(pki: PKI):
    """An HTTPS upstream whose certificate comes from a CA the proxy does not trust."""
    server = UpstreamServer("untrusted", pki.rogue_server.server_context()).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def plain_upstream():
    """A plain-HTTP upstream (for routes with ``upstream http``)."""
    server = UpstreamServer("plain", None).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def closed_port():
    """A port that refuses connections: bound, never listening, held for the whole session."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    yield s.getsockname()[1]
    s.close()


@pytest.fixture(scope="session")
def secret_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A file holding a bearer token (with a trailing newline, as editors write files)."""
    path = tmp_path_factory.mktemp("secrets") / "bearer-token"
    path.write_text(secret_values.FILE_BEARER_TOKEN + "\n")
    path.chmod(0o600)
    return path


@pytest.fixture(scope="session")
def substitutions(pki, upstream, untrusted_upstream, plain_upstream, closed_port, secret_file):
    """Names usable as ``{name}`` in config templates."""
    return {
        "ca": pki.ca_file,
        "upstream_port": upstream.port,
        "untrusted_port": untrusted_upstream.port,
        "plain_port": plain_upstream.port,
        "closed_port": closed_port,
        "secret_file": secret_file,
        "env_bearer": secret_values.ENV_BEARER,
        "env_header": secret_values.ENV_HEADER,
        "env_basic_password": secret_values.ENV_BASIC_PASSWORD,
        "basic_user": secret_values.BASIC_USER,
        "literal_secret": secret_values.LITERAL_SECRET,
    }


@pytest.fixture
def token() -> str:
    """A unique token to put in request paths, to find this test's requests at the upstream."""
    return uuid.uuid4().hex[:16]


# -- the proxy -----------------------------------------------------------------------------------

@pytest.fixture(scope="session")
def credproxy_bin() -> Path:
    return binary_path()


@pytest.fixture(scope="module", autouse=True)
def secret_guard():
    guard = SecretGuard()
    yield guard
    leaks = guard.leaks()
    assert not leaks, "secrets leaked into proxy output:\n" + "\n".join(leaks)


class ProxyFactory:
    """``factory(config_template, env=None, name=None)`` → a started ``ProxyProcess``."""

    def __init__(self, directory: Path, values: dict, guard: SecretGuard, owner: str):
        self.directory = directory
        self.values = values
        self.guard = guard
        self.owner = owner
        self.started: list[ProxyProcess] = []
        self.count = 0

    def config(self, template: str, name: str = "proxy.conf") -> Path:
        """Write the rendered template to a file and return its path (for ``check``/``explain``)."""
        path = self.directory / name
        path.write_text(render(template, self.values))
        return path

    def __call__(self, template: str, env: dict | None = None, name: str | None = None,
                 extra_args: tuple = (), start_timeout: float = 10.0) -> ProxyProcess:
        self.count += 1
        name = name or f"proxy{self.count}"
        workdir = self.directory / name
        workdir.mkdir(parents=True, exist_ok=True)
        config_path = workdir / "proxy.conf"
        config_path.write_text(render(template, self.values))
        full_env = clean_env({**secret_values.proxy_env(), **(env or {})})
        proc = ProxyProcess(binary_path(), config_path, workdir, full_env, name=name,
                            extra_args=extra_args)
        self.guard.proxies.append((self.owner, proc))
        self.started.append(proc)
        try:
            return proc.start(timeout=start_timeout)
        except ProxyStartError as e:
            message = str(e)
        pytest.fail(message, pytrace=False)

    def stop_all(self) -> None:
        """Stop every proxy; fail (at teardown) if one crashed or would not stop on SIGTERM."""
        problems = []
        for p in self.started:
            p.stop()
            why = p.problem()
            if why:
                problems.append(f"{why}; stderr tail:\n{p.stderr_text()[-2000:]}")
        if problems:
            pytest.fail("\n".join(problems), pytrace=False)


@pytest.fixture
def proxy_factory(request, tmp_path: Path, substitutions, secret_guard):
    factory = ProxyFactory(tmp_path, substitutions, secret_guard, request.node.nodeid)
    yield factory
    factory.stop_all()


@pytest.fixture
def proxy(proxy_factory):
    """Alias of ``proxy_factory``: ``proxy(config_template)`` → a started ``ProxyProcess`` that is
    stopped (SIGTERM, then SIGKILL) when the test ends."""
    return proxy_factory


@pytest.fixture(scope="module")
def module_proxy_factory(request, tmp_path_factory, substitutions, secret_guard):
    directory = tmp_path_factory.mktemp(Path(str(request.node.name)).stem)
    factory = ProxyFactory(directory, substitutions, secret_guard, request.node.nodeid)
    yield factory
    factory.stop_all()


@pytest.fixture
def cli(tmp_path_factory):
    """``cli(*args, env=None, cwd=None)`` runs the binary with the secrets' variables set, in an
    empty directory unless ``cwd`` is given (so no stray ./proxy.conf is picked up); text output."""
    empty = tmp_path_factory.mktemp("cli-cwd")

    def run(*args: str, env: dict | None = None, timeout: float = 30.0, cwd: Path | None = None):
        if not binary_path().exists():
            pytest.fail(f"credproxy binary not found at {binary_path()}", pytrace=False)
        return run_cli(list(args), env={**secret_values.proxy_env(), **(env or {})}, timeout=timeout,
                       cwd=cwd or empty)

    return run


@pytest.fixture
def client_env() -> dict[str, str]:
    """An environment for client processes (curl, python): no proxy variables, no extra CAs."""
    return clean_env()


def pytest_report_header(config):  # noqa: ARG001
    path = binary_path()
    state = "found" if path.exists() else "MISSING"
    return f"credproxy binary: {path} ({state})"
