"""Deployment checks of the site's own, run by ``manage.py check --deploy`` beside Django's."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.checks import Tags, Warning, register


@register(Tags.security, deploy=True)
def secrets_from_the_environment(app_configs: Any = None, **kwargs: Any) -> list[Warning]:
    """The demo's signing key is public (it is in the source): a deployment must set its own."""
    if settings.SECRET_KEY == settings.DEMO_SECRET_KEY:
        return [
            Warning(
                "DJANGO_SECRET_KEY is not set: sessions and password-reset links are signed with the "
                "demo's key, which anyone can read in the source.",
                hint='Set DJANGO_SECRET_KEY to a long random value, e.g. python -c "import secrets; '
                'print(secrets.token_urlsafe(50))".',
                id="chat.W001",
            )
        ]
    return []
