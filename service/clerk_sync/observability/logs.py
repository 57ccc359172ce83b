"""structlog set-up: one logger per app, JSON or console, with a redaction step before output."""

from __future__ import annotations

import functools
import re
import sys
from collections.abc import Mapping
from typing import Any, TextIO

import structlog
from structlog.typing import EventDict, FilteringBoundLogger, WrappedLogger

REDACTED = "[redacted]"
_SENSITIVE_KEY = re.compile(
    r"secret|token|signature|password|authorization|cookie|api_key|private|"
    r"email|phone|identifier|otp|jwt|session_cookie|^key$|_key$",
    re.IGNORECASE,
)
_SAFE_KEYS = frozenset({"svix_id", "event_type", "plugin", "handler", "outcome", "event"})
_PATTERNS = (
    re.compile(r"whsec_[A-Za-z0-9+/=]+"),
    re.compile(r"\b(?:sk|pk)_(?:live|test)_[A-Za-z0-9]+"),
    re.compile(r"eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]*"),
    re.compile(r"\bv1,[A-Za-z0-9+/]{20,}={0,2}"),
    re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}"),
    re.compile(r"\+\d[\d ().-]{6,}\d"),
)
#: any of the patterns: most values match none, and one search tells so
_ANY_PATTERN = re.compile("|".join(f"(?:{p.pattern})" for p in _PATTERNS))
_LEVELS = {"debug": 10, "info": 20, "warning": 30, "error": 40, "critical": 50}


def scrub_text(text: str) -> str:
    """Replace secrets, tokens, signatures, e-mail addresses and phone numbers in free text."""
    if _ANY_PATTERN.search(text) is None:
        return text
    for pattern in _PATTERNS:
        text = pattern.sub(REDACTED, text)
    return text


def scrub(value: Any, key: str = "") -> Any:
    """Redact a value: sensitive keys wholesale, strings by pattern, containers recursively."""
    if key and _sensitive(key):
        return REDACTED if value not in (None, "", [], {}) else value
    if isinstance(value, str):
        return scrub_text(value)
    if isinstance(value, Mapping):
        return {k: scrub(v, str(k)) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [scrub(v) for v in value]
    if isinstance(value, int | float | bool) or value is None:
        return value
    return scrub_text(repr(value))


@functools.lru_cache(maxsize=1024)
def _sensitive(key: str) -> bool:
    """Whether values under `key` are redacted wholesale (log keys repeat: asked once each)."""
    return key not in _SAFE_KEYS and _SENSITIVE_KEY.search(key) is not None


def redact(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
    """structlog processor: nothing sensitive reaches a renderer, whatever a plugin logs."""
    return {k: scrub(v, k) for k, v in event_dict.items()}


def make_logger(level: str, fmt: str, stream: TextIO | None = None) -> FilteringBoundLogger:
    """A logger owned by one app (no global structlog configuration is touched)."""
    renderer: Any = (
        structlog.dev.ConsoleRenderer(colors=False)
        if fmt == "console"
        else structlog.processors.JSONRenderer(sort_keys=False)
    )
    processors: list[Any] = [
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.format_exc_info,
        redact,
        renderer,
    ]
    logger: FilteringBoundLogger = structlog.wrap_logger(
        structlog.PrintLogger(stream if stream is not None else sys.stdout),
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(_LEVELS[level]),
        cache_logger_on_first_use=False,
    )
    return logger
