"""deploy/nginx/chat.conf, as shipped, in front of two workers: TLS, sockets, redirects, ids, static.

The test runs a real nginx on the site file, changing only what belongs to one machine (ports,
certificate paths, the workers' addresses, the collected static directory), with a certificate of
its own for 127.0.0.1 that the test's clients trust. The workers run with DJANGO_HTTPS and
DJANGO_BEHIND_PROXY, as behind it in production.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.processes import ROOT, base_env, manage, self_signed_certificate
from tests.production.conftest import PASSWORD, USERNAME, unavailable
from tests.production.support import Page, free_port, full_reply, start_conversation, stop_process

pytestmark = [pytest.mark.production, pytest.mark.live]

SITE = ROOT / "deploy" / "nginx" / "chat.conf"


@dataclass
class Front:
    """nginx's address, shaped as the tests' ``Worker`` (what ``Page`` and the helpers read)."""

    port: int
    plain_port: int
    name: str = "nginx"

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def ws_url(self, conversation: str, since: int | None = None) -> str:
        query = "" if since is None else f"?since={since}"
        return f"wss://127.0.0.1:{self.port}/ws/c/{conversation}/{query}"


def render_site(workers: list[int], front: Front, cert: Path, key: Path, static: Path) -> str:
    """The shipped site with this machine's ports and paths (IPv6 listeners dropped)."""
    site = SITE.read_text()
    replaced = {
        r"^\s*listen \[::\].*$\n": "",
        r"listen 80;": f"listen 127.0.0.1:{front.plain_port};",
        r"listen 443 ssl http2;": f"listen 127.0.0.1:{front.port} ssl http2;",
        r"ssl_certificate\s+\S+;": f"ssl_certificate {cert};",
        r"ssl_certificate_key\s+\S+;": f"ssl_certificate_key {key};",
        r"alias /srv/chat/staticfiles/;": f"alias {static}/;",
    }
    for pattern, replacement in replaced.items():
        site, count = re.subn(pattern, replacement, site, flags=re.MULTILINE)
        assert count, f"{pattern!r} is not in {SITE.name}"
    servers = re.findall(r"server 127\.0\.0\.1:\d+;", site)
    assert len(servers) == 2, servers
    for line, port in zip(servers, workers, strict=True):
        site = site.replace(line, f"server 127.0.0.1:{port};", 1)
    return site


@pytest.fixture
def nginx_binary() -> str:
    binary = shutil.which("nginx", path=f"{os.environ.get('PATH', '')}:/usr/sbin")
    if binary is None:
        unavailable("nginx is not installed (apt-get install nginx-light; `make test` does it as root)")
    if shutil.which("openssl") is None:
        unavailable("openssl is not installed (it makes the test's certificate)")
    return binary


@pytest.fixture
def front(spawn, nginx_binary, monkeypatch) -> Iterator[tuple[Front, object, Path]]:
    """nginx on the shipped site in front of workers A and B; yields it, the workers' site and its log."""
    site = spawn(DJANGO_HTTPS="true", DJANGO_BEHIND_PROXY="true", sign_in=False)
    directory = Path(tempfile.mkdtemp(prefix="nginx-"))
    directory.chmod(0o777)  # nginx's workers run unprivileged when the tests run as root
    cert, key = self_signed_certificate(directory)
    # What chat-migrate.service does before the workers start, into the directory nginx serves.
    static = directory / "staticfiles"
    manage(base_env(DJANGO_STATIC_ROOT=str(static)), "collectstatic", "--noinput")
    proxy = Front(port=free_port(), plain_port=free_port())
    workers = [w.port for w in site.workers]
    (directory / "chat.conf").write_text(render_site(workers, proxy, cert, key, static))
    temp = " ".join(
        f"{kind}_temp_path {directory / kind};"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    (directory / "nginx.conf").write_text(
        f"worker_processes 1;\npid {directory / 'nginx.pid'};\nerror_log {directory / 'error.log'} warn;\n"
        "events { worker_connections 256; }\n"
        # The log shows which request id nginx gave each request.
        f"http {{ log_format ids '$request_id $request_uri'; access_log {directory / 'access.log'} ids; "
        f"{temp} include {directory / 'chat.conf'}; }}\n"
    )
    checked = subprocess.run(
        [nginx_binary, "-t", "-p", str(directory), "-c", str(directory / "nginx.conf")],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert checked.returncode == 0, checked.stderr
    process = subprocess.Popen(
        [nginx_binary, "-p", str(directory), "-c", str(directory / "nginx.conf"), "-g", "daemon off;"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )
    # The test's clients (httpx and websockets) trust the certificate through OpenSSL's variable.
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                httpx.get(f"http://127.0.0.1:{proxy.plain_port}/healthz", timeout=1)
                break
            except httpx.TransportError:
                if time.monotonic() > deadline or process.poll() is not None:
                    log = (directory / "error.log").read_text(errors="replace")
                    raise RuntimeError(f"nginx did not start:\n{log}") from None
                time.sleep(0.05)
        yield proxy, site, directory / "access.log"
    finally:
        stop_process(process)
        shutil.rmtree(directory, ignore_errors=True)


def sign_in(proxy: Front) -> dict[str, str]:
    with httpx.Client(base_url=proxy.url, timeout=10) as client:
        form = client.get("/accounts/login/")
        assert form.status_code == 200, form.text[:500]
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', form.text).group(1)
        answer = client.post(
            "/accounts/login/",
            data={"username": USERNAME, "password": PASSWORD, "csrfmiddlewaretoken": token},
            headers={"Origin": proxy.url},
        )
        assert answer.status_code == 302, answer.text[:500]
        assert "Secure" in answer.headers["set-cookie"]
        return {"sessionid": client.cookies["sessionid"], "csrftoken": client.cookies["csrftoken"]}


async def test_a_reply_streams_through_the_shipped_nginx_site_over_tls(front):
    proxy, site, access_log = front
    async with httpx.AsyncClient(timeout=5) as client:
        plain = await client.get(f"http://127.0.0.1:{proxy.plain_port}/accounts/login/")
        assert plain.status_code == 301
        assert plain.headers["location"] == "https://127.0.0.1/accounts/login/"
        health = await client.get(f"http://127.0.0.1:{proxy.plain_port}/healthz")
        assert health.json()["status"] == "ok"

        # The workers speak plain HTTP: HSTS (sent on secure requests only) shows that they took
        # nginx's X-Forwarded-Proto. Sent once: nginx adds no copy of its own.
        page = await client.get(f"{proxy.url}/accounts/login/", headers={"X-Request-ID": "from-a-client"})
        assert page.status_code == 200
        assert page.headers.get_list("strict-transport-security") == [
            "max-age=31536000; includeSubDomains; preload"
        ]
        # nginx's id for the request, not the client's, is the one the site logs and answers with.
        request_id = page.headers["x-request-id"]
        assert re.fullmatch(r"[0-9a-f]{32}", request_id)

        # Static files come from the collected directory: no worker answers them (a worker's
        # answer carries a request id).
        static = await client.get(f"{proxy.url}/static/chat/vendor/htmx-2.0.11.min.js")
        assert static.status_code == 200
        assert static.content == (ROOT / "static" / "chat" / "vendor" / "htmx-2.0.11.min.js").read_bytes()
        assert "x-request-id" not in static.headers
        assert static.headers["cache-control"] == "max-age=60"
        assert static.headers["x-content-type-options"] == "nosniff"
        assert static.headers["etag"]

    cookies = await asyncio.to_thread(sign_in, proxy)
    text = "Through nginx and TLS, please"
    conversation = await start_conversation(proxy, cookies, text, "demo?tokens=60&tps=60")
    (reply,) = await site.db.replies(conversation)
    watching = await Page.open(proxy, conversation, cookies)  # wss://, upgraded by nginx
    await watching.wait(lambda: reply["id"] in watching.endings, within=20, what="the ending through nginx")
    assert watching.endings[reply["id"]] == "complete"
    row = await site.db.reply(reply["id"])
    assert row["content"] == full_reply(text, 60)
    await watching.close()

    assert f"{request_id} /accounts/login/" in access_log.read_text()
