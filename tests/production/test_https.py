"""A worker in the production profile behind a TLS-terminating proxy (DJANGO_HTTPS, DJANGO_BEHIND_PROXY)."""

from __future__ import annotations

import re

import httpx
import pytest

from tests.processes import base_env, daphne_process
from tests.production.conftest import PASSWORD, USERNAME

pytestmark = [pytest.mark.production, pytest.mark.live]

FROM_PROXY = {"X-Forwarded-Proto": "https", "X-Forwarded-For": "203.0.113.9"}
HSTS = "max-age=31536000; includeSubDomains; preload"


def cookie_flags(response: httpx.Response, name: str) -> set[str]:
    (header,) = [value for value in response.headers.get_list("set-cookie") if value.startswith(f"{name}=")]
    return {part.strip().split("=")[0].lower() for part in header.split(";")[1:]}


def test_behind_the_proxy_plain_http_is_redirected_and_https_gets_hsts_and_secure_cookies(postgres):
    env = base_env(
        DATABASE_URL=postgres.url,
        DJANGO_HTTPS="true",
        DJANGO_BEHIND_PROXY="true",
        DJANGO_ALLOWED_HOSTS="127.0.0.1",
    )
    with daphne_process(env) as url, httpx.Client(base_url=url, timeout=10) as client:
        plain = client.get("/accounts/login/")
        assert plain.status_code == 301
        assert plain.headers["location"] == f"https://{url.removeprefix('http://')}/accounts/login/"
        assert client.get("/healthz").status_code == 200  # balancers ask over plain HTTP

        form = client.get("/accounts/login/", headers=FROM_PROXY)
        assert form.status_code == 200
        assert form.headers["strict-transport-security"] == HSTS
        assert {"secure", "httponly"} <= cookie_flags(form, "csrftoken")
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', form.text).group(1)
        signed_in = client.post(
            "/accounts/login/",
            data={"username": USERNAME, "password": PASSWORD, "csrfmiddlewaretoken": token},
            headers={
                **FROM_PROXY,
                "Origin": f"https://{url.removeprefix('http://')}",
                # The browser sends its Secure cookie over HTTPS, which the proxy passes on as HTTP.
                "Cookie": f"csrftoken={form.cookies['csrftoken']}",
            },
        )
        assert signed_in.status_code == 302, signed_in.text[:500]
        assert {"secure", "httponly"} <= cookie_flags(signed_in, "sessionid")

        # A client claiming HTTPS without the proxy's header is still redirected.
        assert client.get("/", headers={"X-Forwarded-Proto": "http"}).status_code == 301
