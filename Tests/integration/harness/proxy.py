"""Run the real credproxy binary: write a config, start ``serve``, find its port, stop it."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from pathlib import Path
from typing import Mapping, Sequence

# Tests/integration/harness/proxy.py -> repository root is three levels above this directory.
REPO_ROOT = Path(__file__).resolve().parents[3]

LISTEN_RE = re.compile(r"credproxy: listening on (\S+):(\d+)\s*$", re.MULTILINE)

# Variables that would make libcurl (inside the proxy) or the clients we spawn do something other
# than what the test says: proxies in the environment, extra trust stores.
_SCRUBBED_ENV = {
    "http_proxy", "https_proxy", "all_proxy", "no_proxy", "ftp_proxy",
    "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY", "FTP_PROXY",
    "SSL_CERT_FILE", "SSL_CERT_DIR", "CURL_CA_BUNDLE", "CURL_HOME",
}


class ProxyStartError(Exception):
    pass


def binary_path() -> Path:
    env = os.environ.get("CREDPROXY_BIN")
    if env:
        return Path(env)
    return REPO_ROOT / ".build" / "release" / "credproxy"


def clean_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _SCRUBBED_ENV}
    if extra:
        env.update(extra)
    return env


def render(template: str, values: Mapping[str, object]) -> str:
    """Replace ``{name}`` for the known names only, so config braces stay as they are."""
    out = template
    for key, value in values.items():
        out = out.replace("{" + key + "}", str(value))
    return out


def run_cli(args: Sequence[str], env: Mapping[str, str] | None = None, timeout: float = 30.0,
            binary: Path | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """Run a one-shot command (check, explain, --help…); ``cwd`` matters: the config defaults to
    ./proxy.conf."""
    binary = binary or binary_path()
    return subprocess.run(
        [str(binary), *args], capture_output=True, text=True, env=clean_env(env),
        timeout=timeout, stdin=subprocess.DEVNULL, cwd=str(cwd) if cwd else None,
    )


class ProxyProcess:
    def __init__(self, binary: Path, config_path: Path, workdir: Path, env: Mapping[str, str],
                 name: str = "proxy", extra_args: Sequence[str] = ()):
        self.binary = binary
        self.config_path = config_path
        self.workdir = workdir
        self.env = dict(env)
        self.name = name
        self.extra_args = list(extra_args)
        self.stderr_path = workdir / f"{name}.stderr"
        self.stdout_path = workdir / f"{name}.stdout"
        self.proc: subprocess.Popen | None = None
        self.listeners: list[tuple[str, int]] = []
        self.returncode: int | None = None
        # Set by stop(): the process had already exited (crashed?) / needed SIGKILL.
        self.exited_before_stop = False
        self.needed_sigkill = False

    # -- lifecycle -------------------------------------------------------------------------------

    def start(self, timeout: float = 10.0) -> "ProxyProcess":
        if not self.binary.exists():
            raise ProxyStartError(
                f"credproxy binary not found at {self.binary}: build it with "
                "`swift build -c release` or point CREDPROXY_BIN at it"
            )
        with open(self.stderr_path, "wb") as err, open(self.stdout_path, "wb") as out:
            self.proc = subprocess.Popen(
                [str(self.binary), "serve", "--config", str(self.config_path), *self.extra_args],
                stdout=out, stderr=err, stdin=subprocess.DEVNULL, env=self.env,
                cwd=str(self.workdir), start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = LISTEN_RE.findall(self.stderr_text())
            if found:
                # Give a multi-listener config a moment to print its other lines.
                time.sleep(0.05)
                found = LISTEN_RE.findall(self.stderr_text())
                self.listeners = [(h, int(p)) for h, p in found]
                return self
            if self.proc.poll() is not None:
                self.returncode = self.proc.returncode
                raise ProxyStartError(
                    f"credproxy exited with status {self.proc.returncode} before listening.\n"
                    f"config:\n{self.config_path.read_text()}\nstderr:\n{self.stderr_text()[-4000:]}"
                )
            time.sleep(0.02)
        self.stop()
        raise ProxyStartError(
            f"credproxy printed no 'credproxy: listening on' line within {timeout}s.\n"
            f"stderr:\n{self.stderr_text()[-4000:]}"
        )

    def stop(self, timeout: float = 5.0) -> int | None:
        """SIGTERM, then SIGKILL after ``timeout``; returns the exit status."""
        if self.proc is None:
            return self.returncode
        if self.returncode is not None:
            return self.returncode  # already stopped
        if self.proc.poll() is None:
            try:
                self.proc.send_signal(signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.needed_sigkill = True
                self.proc.kill()
                self.proc.wait(timeout=5)
        else:
            self.exited_before_stop = True
        self.returncode = self.proc.returncode
        return self.returncode

    def problem(self) -> str | None:
        """Why this run looks unhealthy after stop(): it crashed or exited on its own with an
        error, or ignored SIGTERM. None when it ran until told to stop and then stopped."""
        if self.needed_sigkill:
            return f"{self.name} did not exit within the timeout after SIGTERM"
        if self.exited_before_stop and self.returncode not in (0, None):
            return f"{self.name} exited on its own with status {self.returncode}"
        return None

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    # -- facts -----------------------------------------------------------------------------------

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    @property
    def port(self) -> int:
        return self.listeners[0][1]

    @property
    def ports(self) -> list[int]:
        return [p for _, p in self.listeners]

    def stderr_text(self) -> str:
        try:
            return self.stderr_path.read_bytes().decode("utf-8", "replace")
        except FileNotFoundError:
            return ""

    def stdout_text(self) -> str:
        try:
            return self.stdout_path.read_bytes().decode("utf-8", "replace")
        except FileNotFoundError:
            return ""

    def stderr_lines(self) -> list[str]:
        return self.stderr_text().splitlines()

    def wait_for_stderr(self, pattern: str | re.Pattern, timeout: float = 5.0,
                        start: int = 0) -> re.Match | None:
        """Wait until ``pattern`` matches stderr (from character offset ``start``)."""
        rx = re.compile(pattern) if isinstance(pattern, str) else pattern
        deadline = time.monotonic() + timeout
        while True:
            m = rx.search(self.stderr_text(), start)
            if m:
                return m
            if time.monotonic() >= deadline:
                return None
            time.sleep(0.05)

    def _status_kib(self, field: str) -> int:
        with open(f"/proc/{self.pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
        raise KeyError(field)

    def rss_kib(self) -> int:
        return self._status_kib("VmRSS")

    def hwm_kib(self) -> int:
        return self._status_kib("VmHWM")

    def open_fds(self) -> int:
        return len(os.listdir(f"/proc/{self.pid}/fd"))

    def threads(self) -> int:
        with open(f"/proc/{self.pid}/status") as f:
            for line in f:
                if line.startswith("Threads:"):
                    return int(line.split()[1])
        return 0

    def __repr__(self) -> str:
        return f"<ProxyProcess {self.name} pid={self.proc.pid if self.proc else None} listeners={self.listeners}>"
