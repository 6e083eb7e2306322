"""`serve --watch-config`: a changed config file is reloaded without a signal, whether it is
rewritten in place, replaced by a rename (editors), or swapped the way a Kubernetes ConfigMap
volume does it (a `..data` symlink renamed over). A touch that changes nothing reloads nothing; a
broken file is refused and the running config keeps serving."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from harness.proxy import render
from harness.rawhttp import get_via_proxy

pytestmark = pytest.mark.timeout(60)

BASE = """\
listen 127.0.0.1:0
ca-file {ca}
route localhost:{upstream_port}/a {
  auth none
}
"""
WITH_B = BASE + """\
route localhost:{upstream_port}/b {
  auth none
}
"""


def status(px, upstream, path: str) -> int:
    return get_via_proxy(px.port, upstream.url(path)).status


def wait_status(px, upstream, path: str, want: int, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if status(px, upstream, path) == want:
            return True
        time.sleep(0.05)
    return False


def reloads(px) -> int:
    return px.stderr_text().count("credproxy: reloaded ")


def configmap_volume(volume: Path, text: str) -> Path:
    """The layout kubelet makes: proxy.conf -> ..data/proxy.conf, ..data -> ..v1/."""
    (volume / "..v1").mkdir(parents=True)
    (volume / "..v1" / "proxy.conf").write_text(text)
    os.symlink("..v1", volume / "..data")
    os.symlink("..data/proxy.conf", volume / "proxy.conf")
    return volume


def configmap_update(volume: Path, version: str, text: str) -> None:
    """kubelet's update: a new directory, then `..data` swapped to it by a rename."""
    (volume / version).mkdir()
    (volume / version / "proxy.conf").write_text(text)
    os.symlink(version, volume / "..data_tmp")
    os.rename(volume / "..data_tmp", volume / "..data")


def test_watch_reloads_on_change_in_place_and_by_rename(proxy_factory, upstream):
    px = proxy_factory(BASE, extra_args=("--watch-config",))
    assert px.wait_for_stderr("watching .*proxy.conf", timeout=2), px.stderr_text()
    assert status(px, upstream, "/a/echo") == 200 and status(px, upstream, "/b/echo") == 403

    # Rewritten in place.
    px.config_path.write_text(render(WITH_B, proxy_factory.values))
    assert wait_status(px, upstream, "/b/echo", 200), px.stderr_text()[-2000:]
    assert reloads(px) == 1

    # Touched, same bytes: nothing to reload.
    os.utime(px.config_path)
    time.sleep(1.0)
    assert reloads(px) == 1, px.stderr_text()

    # Broken: refused, the running config keeps serving.
    px.config_path.write_text("route {\n")
    assert px.wait_for_stderr("reload failed, keeping the running config", timeout=5), px.stderr_text()
    assert status(px, upstream, "/b/echo") == 200

    # Replaced by a rename, as editors save.
    tmp = px.config_path.with_name(".proxy.conf.swp")
    tmp.write_text(render(BASE, proxy_factory.values))
    tmp.rename(px.config_path)
    assert wait_status(px, upstream, "/b/echo", 403), px.stderr_text()[-2000:]
    assert reloads(px) == 2


def test_watch_follows_a_configmap_style_symlink_swap(proxy_factory, upstream, tmp_path):
    volume = configmap_volume(tmp_path / "volume", render(BASE, proxy_factory.values))
    px = proxy_factory(BASE, extra_args=("--watch-config", "--config", str(volume / "proxy.conf")))
    assert px.wait_for_stderr("watching .*volume/proxy.conf", timeout=2), px.stderr_text()
    assert status(px, upstream, "/b/echo") == 403

    configmap_update(volume, "..v2", render(WITH_B, proxy_factory.values))
    assert wait_status(px, upstream, "/b/echo", 200), px.stderr_text()[-2000:]
    assert reloads(px) == 1


def test_watch_follows_a_symlink_into_another_directory(proxy_factory, upstream, tmp_path):
    """`--config /etc/credproxy/proxy.conf` that is a link to a file elsewhere (a ConfigMap mounted
    at /config with the link in /etc, a config-management checkout): the change happens in the
    target's directory, which must be watched too, also after a swap moves the target."""
    # The ConfigMap volume, mounted elsewhere.
    volume = configmap_volume(tmp_path / "config", render(BASE, proxy_factory.values))
    etc = tmp_path / "etc"
    etc.mkdir()
    os.symlink(volume / "proxy.conf", etc / "proxy.conf")
    px = proxy_factory(BASE, extra_args=("--watch-config", "--config", str(etc / "proxy.conf")))
    assert px.wait_for_stderr("watching .*etc/proxy.conf", timeout=2), px.stderr_text()
    assert status(px, upstream, "/b/echo") == 403

    configmap_update(volume, "..v2", render(WITH_B, proxy_factory.values))
    assert wait_status(px, upstream, "/b/echo", 200), px.stderr_text()[-2000:]
    assert reloads(px) == 1

    # The target now lives in ..v2, a directory that did not exist at start: edited in place.
    (volume / "..v2" / "proxy.conf").write_text(render(BASE, proxy_factory.values))
    assert wait_status(px, upstream, "/b/echo", 403), px.stderr_text()[-2000:]
    assert reloads(px) == 2


def test_without_the_flag_nothing_is_watched(proxy_factory, upstream):
    px = proxy_factory(BASE)
    px.config_path.write_text(render(WITH_B, proxy_factory.values))
    time.sleep(1.0)
    assert status(px, upstream, "/b/echo") == 403 and reloads(px) == 0
    assert "watching" not in px.stderr_text()
