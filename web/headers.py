"""Security headers every response carries, in one place: the Flask hook (pages) and the
WSGI fast path that serves cached feed bytes without Flask (cache.FastPath) both send
them, so a feed's first response and its repeats look the same."""
from __future__ import annotations

PAGE_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "font-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)

# Everything but the embed widgets (which may be framed and set their own CSP).
SECURITY_HEADERS = (
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "strict-origin-when-cross-origin"),
    ("Content-Security-Policy", PAGE_CSP),
    ("X-Frame-Options", "DENY"),
)
