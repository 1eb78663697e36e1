"""Encryption of stored API keys.

Keys are encrypted with Fernet (AES-128-CBC with an HMAC) under a key derived from
``CHAT_ENCRYPTION_KEY``, which defaults to ``SECRET_KEY``: a database dump alone does not reveal
them. Changing the setting makes stored keys unreadable; they then read as empty and the admin
asks for them again rather than failing every request.
"""

from __future__ import annotations

import base64
import hashlib
import logging

from cryptography.fernet import Fernet, InvalidToken
from django.conf import settings

logger = logging.getLogger(__name__)

_SALT = b"chat.secrets.api-key"


def _fernet() -> Fernet:
    secret = (settings.CHAT_ENCRYPTION_KEY or settings.SECRET_KEY).encode()
    key = hashlib.pbkdf2_hmac("sha256", secret, _SALT, 100_000)
    return Fernet(base64.urlsafe_b64encode(key))


_cache: dict[str, Fernet] = {}


def _cipher() -> Fernet:
    secret = settings.CHAT_ENCRYPTION_KEY or settings.SECRET_KEY
    cipher = _cache.get(secret)
    if cipher is None:
        _cache.clear()
        cipher = _cache[secret] = _fernet()
    return cipher


def encrypt(value: str) -> str:
    return _cipher().encrypt(value.encode()).decode() if value else ""


def decrypt(token: str) -> str:
    if not token:
        return ""
    try:
        return _cipher().decrypt(token.encode()).decode()
    except (InvalidToken, ValueError):
        logger.error("A stored API key cannot be decrypted: was CHAT_ENCRYPTION_KEY or SECRET_KEY changed?")
        return ""


def mask(value: str) -> str:
    """``sk-…f3a9``: enough to tell keys apart, never enough to use one."""
    if not value:
        return ""
    if len(value) <= 8:
        return "•" * 8
    return f"{value[:3]}…{value[-4:]}"
