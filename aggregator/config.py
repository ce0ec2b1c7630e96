"""feeds.yaml → Config: validation that reports every problem as "file:line: field: message",
and a polling watcher that applies valid edits and keeps the last good config on bad ones.

ruamel.yaml's round-trip loader gives us line numbers; pydantic models check the fields. The
two meet in `_line_of`, which walks a pydantic error `loc` down the YAML tree.
"""
from __future__ import annotations

import difflib
import hashlib
import os
import re
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Annotated, Any, Callable
from urllib.parse import urlsplit

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, ValidationError
from ruamel.yaml import YAML
from ruamel.yaml.error import MarkedYAMLError, YAMLError
from ruamel.yaml.scalarbool import ScalarBoolean

from .errors import ConfigError
from .types import Source

MIN_INTERVAL = 60
# A day: news feeds change hourly; a feed checked less often than daily is better disabled,
# and a huge value overflows the scheduler's dates.
MAX_INTERVAL = 86400
DEFAULT_INTERVAL = 600

# ISO 3166-1 alpha-2 (all 249 officially assigned codes); Python has no such list built in.
ISO_COUNTRIES = frozenset("""
AD AE AF AG AI AL AM AO AQ AR AS AT AU AW AX AZ BA BB BD BE BF BG BH BI BJ BL BM BN BO BQ BR
BS BT BV BW BY BZ CA CC CD CF CG CH CI CK CL CM CN CO CR CU CV CW CX CY CZ DE DJ DK DM DO DZ
EC EE EG EH ER ES ET FI FJ FK FM FO FR GA GB GD GE GF GG GH GI GL GM GN GP GQ GR GS GT GU GW
GY HK HM HN HR HT HU ID IE IL IM IN IO IQ IR IS IT JE JM JO JP KE KG KH KI KM KN KP KR KW KY
KZ LA LB LC LI LK LR LS LT LU LV LY MA MC MD ME MF MG MH MK ML MM MN MO MP MQ MR MS MT MU MV
MW MX MY MZ NA NC NE NF NG NI NL NO NP NR NU NZ OM PA PE PF PG PH PK PL PM PN PR PS PT PW PY
QA RE RO RS RU RW SA SB SC SD SE SG SH SI SJ SK SL SM SN SO SR SS ST SV SX SY SZ TC TD TF TG
TH TJ TK TL TM TN TO TR TT TV TW TZ UA UG UM US UY UZ VA VC VE VG VI VN VU WF WS YE YT ZA ZM
ZW
""".split())

# [0-9], not \d: \d also matches Arabic-Indic digits, which int() would silently accept.
_SLUG = re.compile(r"[a-z0-9][a-z0-9_-]*")
_DURATION = re.compile(r"(?:([0-9]+)h)?(?:([0-9]+)m)?(?:([0-9]+)s)?")
_LANGUAGE = re.compile(r"[a-z]{2,3}(?:-[A-Za-z0-9]{2,8})*")


@dataclass(frozen=True)
class Config:
    path: str
    sources: tuple[Source, ...]
    digest: str  # sha256 of the file's bytes: what the watcher compares
    data: bytes = field(default=b"", repr=False, compare=False)  # kept as the last good config


@dataclass(frozen=True)
class Rejected:
    """A feeds file that does not validate (or cannot be read): the config in force stays
    the last good one, and operators are told what is wrong (/status, `stats`)."""

    path: str
    problems: tuple[str, ...]  # "file:line: field: problem"
    since: datetime  # the rejected file's modification time; when first seen if unreadable
    digest: str | None = None  # of the rejected bytes (None: unreadable)


# --------------------------------------------------------------------------- values


def parse_interval(value: Any) -> int:
    """'90s', '10m', '1h', '1h30m', or a whole number of seconds → seconds (> 0)."""
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise ValueError(
            f"interval must be a duration like '90s', '10m', '1h30m' or a number of seconds, "
            f"not {value!r}"
        )
    if isinstance(value, int):
        seconds = value
    else:
        text = value.strip().lower()
        match = _DURATION.fullmatch(text)
        if re.fullmatch(r"[0-9]+", text):
            seconds = int(text)
        elif text and match:
            hours, minutes, secs = (int(g or 0) for g in match.groups())
            seconds = hours * 3600 + minutes * 60 + secs
        else:
            raise ValueError(
                f"invalid interval {value!r}: write it like '90s', '10m', '1h' or '1h30m'"
            )
    if seconds <= 0:
        raise ValueError(f"interval must be positive, got {value!r}")
    return seconds


def _interval(value: Any) -> int:
    seconds = parse_interval(value)
    if seconds < MIN_INTERVAL:
        raise ValueError(f"interval {value!r} is below the minimum of 1m (60 seconds)")
    if seconds > MAX_INTERVAL:
        raise ValueError(f"interval {value!r} is above the maximum of 24h (a feed checked "
                         "less often is better disabled: enabled: false)")
    return seconds


def _slug(value: str) -> str:
    if not _SLUG.fullmatch(value):
        raise ValueError(
            f"{value!r} is not a slug: use a-z, 0-9, '-' and '_', starting with a letter or digit"
        )
    return value


def normalize_url(value: str) -> str:
    """Check an absolute http(s) URL; lowercase its scheme and host (they are case-blind)."""
    url = value.strip()
    if re.search(r"\s", url):
        raise ValueError(f"{value!r} contains whitespace")
    try:
        parts = urlsplit(url)
    except ValueError as exc:  # e.g. a malformed IPv6 host
        raise ValueError(f"{value!r} is not a valid URL: {exc}") from None
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{value!r} is not an absolute http:// or https:// URL")
    try:
        parts.port  # noqa: B018 - raises on a non-numeric or out-of-range port
    except ValueError:
        raise ValueError(f"{value!r} has an invalid port") from None
    userinfo, at, hostport = parts.netloc.rpartition("@")
    netloc = userinfo + at + hostport.lower()  # userinfo is case-sensitive; leave it
    return parts._replace(scheme=parts.scheme.lower(), netloc=netloc).geturl()


def _country(value: str) -> str:
    if not re.fullmatch(r"[A-Za-z]{2}", value):
        raise ValueError(f"{value!r} is not a two-letter ISO 3166-1 alpha-2 code (e.g. 'QA')")
    if value != value.upper():
        raise ValueError(f"write country codes in uppercase: {value.upper()!r}")
    if value == "UK":
        raise ValueError("'UK' is not an ISO 3166-1 code; the United Kingdom is 'GB'")
    if value not in ISO_COUNTRIES:
        raise ValueError(f"{value!r} is not an ISO 3166-1 alpha-2 country code")
    return value


def _language(value: str) -> str:
    if not _LANGUAGE.fullmatch(value):
        raise ValueError(f"{value!r} is not a language tag like 'ar' or 'ar-EG'")
    return value


def _title(value: str) -> str:
    if not value.strip():
        raise ValueError("title is empty")
    return value.strip()


# --------------------------------------------------------------------------- schema

Slug = Annotated[str, AfterValidator(_slug)]
Url = Annotated[str, AfterValidator(normalize_url)]
Country = Annotated[str, AfterValidator(_country)]
Language = Annotated[str, AfterValidator(_language)]
Interval = Annotated[int, BeforeValidator(_interval)]
Title = Annotated[str, AfterValidator(_title)]


class _Strict(BaseModel):
    # strict: YAML already gives native types, so `enabled: "no"` or `title: 2024` are mistakes
    model_config = ConfigDict(extra="forbid", strict=True)


class _Defaults(_Strict):
    interval: Interval = DEFAULT_INTERVAL
    language: Language = "ar"
    country: Country | None = None
    tags: list[Slug] = []
    enabled: bool = True


class _Source(_Defaults):
    id: Slug
    url: Url
    title: Title
    site: Url | None = None


class _File(_Strict):
    defaults: dict | None = None
    sources: list


_INHERITED = tuple(_Defaults.model_fields)  # fields a source takes from `defaults:` if unset


# --------------------------------------------------------------------------- loading


def load_config(path: str | os.PathLike) -> Config:
    path = str(path)
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError(path, [_unreadable(path, exc)]) from None
    return _load_bytes(data, path)


def _unreadable(path: str, exc: OSError) -> str:
    return f"{path}:1: file: cannot read: {exc.strerror or exc}"


def load_config_or_last_good(path: str | os.PathLike, last_good: Callable[[], bytes | None]
                             ) -> tuple[Config, Rejected | None]:
    """The feeds file; or, when it does not validate, the last good config (`last_good()`:
    the bytes of the last valid file any of our processes loaded, kept in Redis) and what
    is wrong with the file. A process started during a bad edit (a restart, a deploy)
    then runs what was running before instead of refusing to start. Raises the file's
    ConfigError when there is no last good config, or it no longer validates."""
    path = str(path)
    data = None
    try:
        data = Path(path).read_bytes()
        return _load_bytes(data, path), None
    except OSError as exc:
        problem = ConfigError(path, [_unreadable(path, exc)])
    except ConfigError as exc:
        problem = exc
    saved = last_good()
    if not saved:
        raise problem
    try:
        config = _load_bytes(saved, path)
    except ConfigError:
        raise problem from None
    try:
        since = _mtime(os.stat(path)) if data is not None else datetime.now(timezone.utc)
    except OSError:  # gone since it was read
        since = datetime.now(timezone.utc)
    digest = hashlib.sha256(data).hexdigest() if data is not None else None
    return config, Rejected(path, tuple(problem.problems), since, digest)


def config_status(path: str, rejected: Rejected | None) -> dict:
    """For `stats --json` and /status.json: whether the feeds file is the config in force
    (false while an edit does not validate and the last good config runs), with its
    problems as file:line messages."""
    return {
        "path": path,
        "valid": rejected is None,
        "problems": list(rejected.problems) if rejected else [],
        "rejected_since": rejected.since.isoformat(timespec="seconds") if rejected else None,
    }


def _mtime(st: os.stat_result) -> datetime:
    return datetime.fromtimestamp(st.st_mtime, timezone.utc)


def load_config_text(text: str, path: str = "<string>") -> Config:
    return _load_bytes(text.encode("utf-8"), path)


def _load_bytes(data: bytes, path: str) -> Config:
    digest = hashlib.sha256(data).hexdigest()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise ConfigError(path, [f"{path}:{line}: encoding: the file is not valid UTF-8"]) from None
    try:
        tree = YAML(typ="rt").load(text)
    except MarkedYAMLError as exc:
        raise ConfigError(path, [_yaml_problem(exc, text, path)]) from None
    except YAMLError as exc:
        raise ConfigError(path, [f"{path}:1: yaml: {exc}"]) from None
    return Config(path=path, sources=_validate(tree, path), digest=digest, data=data)


# What the YAML parser's words mean in the mistakes people make editing feeds.yaml by hand.
_YAML_HINTS = (
    ("'\\t'", "indent with spaces: YAML does not allow tabs"),
    ("expected <block end>", "this line is indented differently from the lines of its "
                             "source above"),
    ("mapping values are not allowed here", "a value with ': ' in it needs quotes"),
)


def _yaml_problem(exc: MarkedYAMLError, text: str, path: str) -> str:
    problem, context = exc.problem_mark, exc.context_mark
    if problem is None or (context is not None and problem.line >= text.count("\n")):
        # An error found at end of file (an unclosed quote or bracket) is best shown where the
        # construct began.
        problem, context = context, None
    line = problem.line + 1 if problem else 1
    where = f" (line {context.line + 1})" if context and context.line != problem.line else ""
    message = "; ".join(filter(None, [f"{exc.context}{where}" if exc.context else "", exc.problem]))
    hints = [hint for marker, hint in _YAML_HINTS if marker in (exc.problem or "")]
    return f"{path}:{line}: yaml: {message or exc}" + "".join(f" ({h})" for h in hints)


def _validate(tree: Any, path: str) -> tuple[Source, ...]:
    problems: list[tuple[int, str]] = []

    def report(loc: tuple, message: str) -> None:
        line = _line_of(tree, loc)
        problems.append((line, f"{path}:{line}: {_label(loc) or 'document'}: {message}"))

    def validate(model: type[BaseModel], data: Any, loc: tuple) -> Any:
        try:
            return model.model_validate(data)
        except ValidationError as exc:
            for err in exc.errors(include_url=False):
                report(loc + err["loc"], _message(model, err))
            return None

    if tree is None:
        report(("sources",), "the file is empty; expected a 'sources:' list")
    elif not isinstance(tree, dict):
        report((), "expected a mapping with 'defaults:' and 'sources:'")
    if problems:
        raise ConfigError(path, [p for _, p in problems])

    data = _plain(tree)
    validate(_File, data, ())
    # Carry on past top-level problems so one run shows everything that is wrong.
    raw_defaults = data.get("defaults") if isinstance(data.get("defaults"), dict) else {}
    raw_sources = data.get("sources") if isinstance(data.get("sources"), list) else []
    defaults = validate(_Defaults, raw_defaults, ("defaults",))
    sources = [validate(_Source, item, ("sources", i)) for i, item in enumerate(raw_sources)]
    _check_unique(raw_sources, tree, report)

    if problems:
        problems.sort(key=lambda p: p[0])  # stable: same-line problems keep their order
        raise ConfigError(path, [p for _, p in problems])

    def pick(src: _Source, name: str) -> Any:
        return getattr(src if name in src.model_fields_set else defaults, name)

    return tuple(
        Source(
            id=src.id, url=src.url, title=src.title, site=src.site,
            **{name: pick(src, name) for name in _INHERITED if name != "tags"},
            tags=tuple(pick(src, "tags")),
            rank=rank,
        )
        for rank, src in enumerate(sources)
    )


def _check_unique(raw_sources: list, tree: Any, report: Callable[[tuple, str], None]) -> None:
    """Duplicate ids and URLs, checked on the raw values so an otherwise bad entry still counts."""
    seen: dict[tuple[str, str], int] = {}
    for i, item in enumerate(raw_sources):
        if not isinstance(item, dict):
            continue
        for name in ("id", "url"):
            value = item.get(name)
            if not isinstance(value, str):
                continue
            try:
                key = normalize_url(value) if name == "url" else value
            except ValueError:
                continue  # already reported as a bad URL
            loc = ("sources", i, name)
            first = seen.setdefault((name, key), _line_of(tree, loc))
            if first != _line_of(tree, loc):
                report(loc, f"duplicate {name} {value!r} (first at line {first})")


def _plain(node: Any) -> Any:
    """ruamel's round-trip types → plain Python, so pydantic's strict mode sees ordinary values."""
    if isinstance(node, dict):
        return {str(k): _plain(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_plain(v) for v in node]
    if isinstance(node, (bool, ScalarBoolean)):  # ScalarBoolean (anchored bools) is an int
        return bool(node)
    for kind in (int, float, str):
        if isinstance(node, kind):
            return kind(node)
    return node


def _line_of(tree: Any, loc: tuple) -> int:
    """1-based line of the deepest node along `loc` that exists in the YAML tree.

    A missing key resolves to its parent mapping, e.g. a source without `title` → its `- id:` line.
    """
    line, node = 1, tree
    for part in loc:
        try:
            if isinstance(node, dict):
                key = next(k for k in node if str(k) == str(part))
                line, node = node.lc.key(key)[0] + 1, node[key]
            elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
                line, node = node.lc.item(part)[0] + 1, node[part]
            else:
                break
        except (StopIteration, KeyError, AttributeError):  # absent, or merged via `<<:`
            break
    return line


def _label(loc: tuple) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _message(model: type[BaseModel], err: dict) -> str:
    kind = err["type"]
    if kind == "extra_forbidden":
        name = str(err["loc"][-1])
        close = difflib.get_close_matches(name, model.model_fields, n=1)
        hint = f"did you mean {close[0]!r}?" if close else "allowed: " + ", ".join(sorted(model.model_fields))
        return f"unknown key {name!r} ({hint})"
    if kind == "missing":
        return "required field is missing"
    if kind == "value_error":
        return str(err["ctx"]["error"])
    if kind == "model_type":
        return f"expected a mapping of keys, got {err['input']!r}"
    msg = err["msg"]
    text = f"{msg[0].lower()}{msg[1:]} (got {err['input']!r})"
    if kind.startswith("bool"):
        text += ": write true or false"
    elif kind.startswith("string") and isinstance(err["input"], (int, float, bool)):
        text += ": quote it to keep it as text, e.g. \"2024\""
    return text


# --------------------------------------------------------------------------- reload


class ConfigWatcher:
    """Polled by the worker every few seconds; no threads. Bad edits never replace a good config."""

    # A file written less than this long ago may be rewritten within the same mtime tick
    # (coarse filesystem timestamps), so its stat is not trusted to mean "unchanged".
    RACY_SECONDS = 2.0

    def __init__(self, path: str | os.PathLike, on_change: Callable[[Config], None], log,
                 initial: Config | None = None, rejected: Rejected | None = None):
        self.path = str(path)
        self.on_change = on_change
        self.log = log
        self._current = initial
        self._stat: tuple[int, int] | None = None
        # good or bad, each version of the file is handled once
        self._seen_digest = (rejected.digest or "unreadable") if rejected else \
            initial.digest if initial else None
        self.rejected = rejected  # the file as it is now, when it is not the config in force

    @property
    def current(self) -> Config | None:
        return self._current

    def check(self) -> bool:
        """Reload if the file changed. True when a new valid config was applied."""
        try:
            st = os.stat(self.path)
            stat_key = (st.st_mtime_ns, st.st_size)
            if stat_key == self._stat:
                return False
            data = Path(self.path).read_bytes()
        except OSError as exc:
            if self._seen_digest != "unreadable":
                self._seen_digest = "unreadable"
                self._stat = None
                self.rejected = Rejected(self.path, (_unreadable(self.path, exc),),
                                         datetime.now(timezone.utc))
                self.log.error("%s: cannot read: %s; keeping the current config", self.path, exc)
            return False
        self._stat = stat_key if time.time() - st.st_mtime > self.RACY_SECONDS else None
        digest = hashlib.sha256(data).hexdigest()
        if digest == self._seen_digest:
            return False
        self._seen_digest = digest
        try:
            config = _load_bytes(data, self.path)
        except ConfigError as exc:
            self.rejected = Rejected(self.path, tuple(exc.problems), _mtime(st), digest)
            for problem in exc.problems:
                self.log.error("%s", problem)
            self.log.error("%s: %d problem(s); keeping the previous config",
                           self.path, len(exc.problems))
            return False
        self._current = config
        self.rejected = None
        self.log.info("%s: loaded %d sources", self.path, len(config.sources))
        self.on_change(config)
        return True


def no_config_to_run(exc: ConfigError) -> int:
    """A process that cannot start: the file does not validate and no valid one was kept
    (a first start). Each problem on stderr, no traceback; exit status 2."""
    for problem in exc.problems:
        print(problem, file=sys.stderr)
    print(f"{exc.path}: no valid config to run (none kept from an earlier start); "
          f"fix the file (`python -m aggregator check-config`)", file=sys.stderr)
    return 2


def check_config_main(path: str | os.PathLike) -> int:
    """`check-config`: 0 and a one-line summary, or 1 and every problem on stderr."""
    try:
        config = load_config(path)
    except ConfigError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        return 1
    enabled = sum(1 for s in config.sources if s.enabled)
    print(f"OK: {len(config.sources)} sources ({enabled} enabled)")
    return 0
