"""`python -m aggregator sources …`: edit feeds.yaml in place, keeping its comments and order.

    sources list [--json]
    sources add URL [--id ID] [--title T] [--site URL] [--country CC] [--tags a,b]
                [--interval 10m] [--language ar] [--disabled]
    sources remove ID
    sources enable ID | disable ID
    sources import-opml FILE [--tags a,b] [--dry-run]
    sources export-opml [-o FILE]
    sources moved [--apply]

How edits keep the file: ruamel.yaml's round-trip loader tells us where every source
starts (line and column), and we edit those lines of text. Going through its object
model instead would move comments: ruamel attaches a section comment ("# --- Gulf") to
the last key of the source *before* it, so deleting or appending a source through the
model drops or misplaces the header of the next section. Line edits touch nothing but
the source in question.

Every edit is validated with aggregator.config (the same checks as check-config, with
file:line problems) and checked to have done exactly what was asked before the file is
replaced: written to a temporary file in the same directory, fsynced, then renamed over
the original (readers, including the running worker's watcher, see the old file or the
new one, never half). An edit that would make the file invalid leaves it untouched.
"""
from __future__ import annotations

import argparse
import difflib
import json
import os
import re
import sys
import tempfile
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from datetime import datetime, timezone
from email.utils import format_datetime
from pathlib import Path
from urllib.parse import urlsplit

from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

from .config import Config, load_config_text, normalize_url
from .errors import ConfigError, DiscoveryError
from .schedule import for_url
from .types import Source, SourceState

UTC = timezone.utc
MAX_OPML_BYTES = 5 * 1024 * 1024


class CliError(Exception):
    """A problem to print (without a traceback) and exit 1 on."""


# --- the file as lines, located by ruamel ---------------------------------------------------

@dataclass(frozen=True)
class Span:
    id: str | None
    start: int  # 0-based line of the item's "- "
    end: int  # 0-based last line of its content (trailing comments/blank lines excluded)
    key_col: int  # column of its keys


def _is_filler(line: str) -> bool:
    s = line.strip()
    return not s or s.startswith("#")


class FeedsFile:
    def __init__(self, path: str | os.PathLike):
        self.path = str(path)
        try:
            self.raw = Path(self.path).read_bytes()
        except OSError as e:
            raise CliError(f"{self.path}: cannot read: {e.strerror or e}") from None
        try:
            self.text = self.raw.decode("utf-8-sig")
        except UnicodeDecodeError:
            raise CliError(f"{self.path}: not valid UTF-8") from None
        self.config = self._validate(self.text, what="the file is already invalid; fix it "
                                                     "first (check-config shows every problem)")

    def _validate(self, text: str, what: str) -> Config:
        try:
            return load_config_text(text, self.path)
        except ConfigError as e:
            raise CliError("\n".join(e.problems) + f"\n{self.path}: {what}") from None

    # locating ---------------------------------------------------------------------------
    def _tree(self, text: str):
        try:
            return YAML(typ="rt").load(text)
        except YAMLError as e:  # validated already; only a bug gets here
            raise CliError(f"{self.path}: {e}") from None

    def spans(self, text: str | None = None) -> list[Span]:
        text = self.text if text is None else text
        tree = self._tree(text)
        lines = text.split("\n")
        seq = tree.get("sources") or []
        starts = [seq.lc.item(i) for i in range(len(seq))]
        out = []
        for i, (line, col) in enumerate(starts):
            limit = starts[i + 1][0] if i + 1 < len(starts) else len(lines)
            end = line
            for j in range(line + 1, limit):
                s = lines[j]
                if _is_filler(s):
                    continue
                if len(s) - len(s.lstrip(" ")) < col:  # dedented: the next top-level key
                    break
                end = j
            item = seq[i]
            out.append(Span(str(item.get("id")) if hasattr(item, "get") else None, line, end,
                            col))
        return out

    def find(self, source_id: str) -> Span:
        for span in self.spans():
            if span.id == source_id:
                return span
        ids = [s.id for s in self.config.sources]
        close = difflib.get_close_matches(source_id, ids, n=1)
        hint = (f"did you mean {close[0]!r}?" if close
                else f"sources: {', '.join(ids) or 'none'}; `sources list` shows them")
        raise CliError(f"no source {source_id!r} in {self.path} ({hint})")

    # writing ----------------------------------------------------------------------------
    def save(self, new_text: str, expect) -> Config:
        """Validate, check `expect(config)` (what the edit meant), then replace atomically."""
        config = self._validate(new_text, what="the edit would make the file invalid; "
                                                "nothing was written")
        problem = expect(config)
        if problem:
            raise CliError(f"{self.path}: internal error, edit not written: {problem}")
        target = os.path.realpath(self.path)  # a symlinked feeds.yaml stays a symlink
        try:
            if Path(target).read_bytes() != self.raw:
                raise CliError(f"{self.path} changed while it was being edited; nothing was "
                               "written, run the command again")
            mode = os.stat(target).st_mode & 0o7777
            fd, tmp = tempfile.mkstemp(dir=os.path.dirname(target), prefix=".feeds-",
                                       suffix=".yaml.tmp")
            try:
                with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
                    f.write(new_text)
                    f.flush()
                    os.fsync(f.fileno())
                os.chmod(tmp, mode)
                os.replace(tmp, target)
            except BaseException:
                if os.path.exists(tmp):
                    os.unlink(tmp)
                raise
            dfd = os.open(os.path.dirname(target), os.O_RDONLY)
            try:
                os.fsync(dfd)
            finally:
                os.close(dfd)
        except OSError as e:
            raise CliError(f"{self.path}: cannot write: {e.strerror or e}") from None
        self.raw = new_text.encode("utf-8")
        self.text = new_text
        self.config = config
        return config


# --- rendering a new source -------------------------------------------------------------------

_PLAIN_SAFE = re.compile(r"[^\s#:'\"\[\]{},&*!|>%@`?-][^#\n]*")


def _scalar(value) -> str:
    """YAML for a scalar: plain when it reads back as the same string, else double-quoted
    (a JSON string is a valid YAML double-quoted scalar)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    text = str(value)
    if _PLAIN_SAFE.fullmatch(text) and text == text.strip() and ": " not in text:
        try:
            if YAML(typ="safe").load(f"k: {text}") == {"k": text}:
                return text
        except YAMLError:
            pass
    return json.dumps(text, ensure_ascii=False)


def render_source(fields: dict, dash_col: int) -> list[str]:
    pad = " " * dash_col
    lines = []
    for i, (key, value) in enumerate(fields.items()):
        if isinstance(value, (list, tuple)):
            rendered = "[" + ", ".join(_scalar(v) for v in value) + "]"
        else:
            rendered = _scalar(value)
        lines.append(f"{pad}{'- ' if i == 0 else '  '}{key}: {rendered}")
    return lines


def _layout(ff: FeedsFile) -> tuple[int, int]:
    """(dash column, line after which new sources go) from the existing file."""
    lines = ff.text.split("\n")
    spans = ff.spans()
    if spans:
        last = spans[-1]
        dash = lines[last.start].index("-")
        return dash, last.end
    tree = ff._tree(ff.text)
    return 2, tree.lc.key("sources")[0]


# --- commands -----------------------------------------------------------------------------------

def cmd_list(ff: FeedsFile, args) -> int:
    if args.json:
        print(json.dumps([{
            "id": s.id, "title": s.title, "url": s.url, "site": s.site, "country": s.country,
            "tags": list(s.tags), "interval": s.interval, "language": s.language,
            "enabled": s.enabled,
        } for s in ff.config.sources], ensure_ascii=False, indent=2))
        return 0
    for s in ff.config.sources:
        state = "on " if s.enabled else "off"
        print(f"{s.id:<28} {state} {_duration(s.interval):>6}  {s.country or '--'}  {s.url}  "
              f"{s.title}")
    enabled = sum(s.enabled for s in ff.config.sources)
    print(f"{len(ff.config.sources)} sources ({enabled} enabled) in {ff.path}")
    return 0


def _duration(seconds: int) -> str:
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return (f"{h}h" if h else "") + (f"{m}m" if m else "") + (f"{s}s" if s else "") or "0s"


def source_fields(args) -> dict:
    fields = {"id": args.id, "url": args.url, "title": args.title}  # add fills the blanks
    if args.site:
        fields["site"] = args.site
    if args.country:
        fields["country"] = args.country
    if args.tags is not None:
        fields["tags"] = [t.strip() for t in args.tags.split(",") if t.strip()]
    if args.language:
        fields["language"] = args.language
    if args.interval:
        fields["interval"] = int(args.interval) if args.interval.isdigit() else args.interval
    if args.disabled:
        fields["enabled"] = False
    return fields


def add_sources(ff: FeedsFile, new: list[dict]) -> Config:
    """Append sources after the last one (the end of the operator's ranking)."""
    if not new:
        return ff.config
    lines = ff.text.split("\n")
    dash, after = _layout(ff)
    block = [line for fields in new for line in render_source(fields, dash)]
    head = lines[: after + 1]
    if not ff.spans():  # `sources:` empty or `sources: []`
        head[after] = re.sub(r"^(\s*sources:).*$", r"\1", head[after])
    new_text = "\n".join(head + block + lines[after + 1:])
    if not new_text.endswith("\n"):
        new_text += "\n"
    before = [s.id for s in ff.config.sources]
    wanted = before + [f["id"] for f in new]
    return ff.save(new_text, lambda c: None if [s.id for s in c.sources] == wanted
                   else f"sources would be {[s.id for s in c.sources]}")


def cmd_add(ff: FeedsFile, args, settings) -> int:
    """Without --id or --title, reads the URL (a feed, or a page announcing one) for what
    is missing: the feed's title, its site and language, an id from the site's host."""
    args.url = args.url or args.url_option
    if not args.url:
        raise CliError("sources add: give the feed's URL")
    if not (args.id and args.title):
        _not_there_yet(ff, args.url)
        found = _discover(args.url, settings)
        if found.via:
            print(f"{found.via} announces the feed {found.url}")
        elif found.url != args.url:
            print(f"{args.url} moved permanently to {found.url}")
        _not_there_yet(ff, found.url)
        if not found.entries:
            print(f"note: {found.url} is a feed without items for now", file=sys.stderr)
        args.url = found.url
        args.site = args.site or found.site
        args.title = args.title or found.title or urlsplit(found.url).hostname
        if not args.language and found.language and not found.language.startswith("ar"):
            args.language = found.language
        if not args.id:
            try:
                site = normalize_url(args.site) if args.site else None
            except ValueError:
                site = None
            args.id = slug_for(normalize_url(args.url), site, {s.id for s in ff.config.sources})
    fields = source_fields(args)
    config = add_sources(ff, [fields])
    s = next(s for s in config.sources if s.id == args.id)
    print(f"added {s.id} ({s.url}) \"{s.title}\" to {ff.path} as source "
          f"{len(config.sources)} of {len(config.sources)}; a running worker picks it up "
          "within seconds")
    return 0


def _not_there_yet(ff: FeedsFile, url: str) -> None:
    """Say so before reading a URL the file already has (validation would say it after)."""
    try:
        key = normalize_url(url)
    except ValueError as e:
        raise CliError(f"sources add: {e}") from e
    for s in ff.config.sources:  # validated: their URLs are normalised already
        if s.url == key:
            raise CliError(f"sources add: {url} is already in {ff.path} as {s.id}")


def _discover(url: str, settings):
    from .discover import discover
    from .fetch import Fetcher

    fetcher = Fetcher(settings)
    try:
        return discover(url, fetcher, datetime.now(UTC))
    except DiscoveryError as e:
        hint = "\n(give --id and --title to add it without reading it)" if e.passing else ""
        raise CliError(f"sources add: {e}{hint}") from e
    finally:
        fetcher.close()


def cmd_remove(ff: FeedsFile, args) -> int:
    span = ff.find(args.id)
    lines = ff.text.split("\n")
    new_text = "\n".join(lines[: span.start] + lines[span.end + 1:])
    wanted = [s.id for s in ff.config.sources if s.id != args.id]
    ff.save(new_text, lambda c: None if [s.id for s in c.sources] == wanted
            else f"sources would be {[s.id for s in c.sources]}")
    print(f"removed {args.id} from {ff.path}; its stored items stay until retention drops "
          "them")
    return 0


def set_enabled(ff: FeedsFile, source_id: str, enabled: bool) -> bool:
    """True when the file changed."""
    span = ff.find(source_id)
    current = next(s for s in ff.config.sources if s.id == source_id)
    if current.enabled == enabled:
        return False
    lines = ff.text.split("\n")
    tree = ff._tree(ff.text)
    item = next(it for it in tree["sources"] if str(it.get("id")) == source_id)
    value = "true" if enabled else "false"
    if "enabled" in item:
        row, col = item.lc.key("enabled")
        lines[row] = re.sub(r"^(\s*enabled\s*:\s*)([^\s#]+)", lambda m: m.group(1) + value,
                            lines[row], count=1)
    else:
        lines.insert(span.end + 1, " " * span.key_col + f"enabled: {value}")
    new_text = "\n".join(lines)

    def expect(c: Config):
        s = next((s for s in c.sources if s.id == source_id), None)
        if s is None or s.enabled != enabled:
            return f"{source_id} would not be {'enabled' if enabled else 'disabled'}"
        if [x.id for x in c.sources] != [x.id for x in ff.config.sources]:
            return "the order of sources would change"
        return None

    ff.save(new_text, expect)
    return True


def cmd_enable(ff: FeedsFile, args, enabled: bool) -> int:
    changed = set_enabled(ff, args.id, enabled)
    word = "enabled" if enabled else "disabled"
    print(f"{args.id} {word} in {ff.path}" if changed else f"{args.id} is already {word}")
    return 0


# --- permanent redirects ---------------------------------------------------------------------------

def moved_sources(config: Config, states: dict[str, SourceState]) -> list[tuple[Source, str]]:
    """(source, new URL) for every source whose configured URL answered with a permanent
    redirect. A suggestion recorded for a URL the file no longer has is stale: skipped."""
    out = []
    for source in config.sources:
        suggested = for_url(source, states[source.id]).suggested_url
        if suggested and (url := normalize_url(suggested)) != source.url:
            out.append((source, url))
    return out


def _value_end(line: str, start: int) -> int:
    """Where the one-line YAML scalar starting at `start` ends (quoted or plain)."""
    quote = line[start:start + 1]
    if quote == "'":
        i = start + 1
        while (i := line.find("'", i)) != -1 and line[i + 1:i + 2] == "'":
            i += 2  # '' is an escaped quote
        return len(line) if i == -1 else i + 1
    if quote == '"':
        m = re.compile(r'"(?:[^"\\]|\\.)*"').match(line, start)
        return m.end() if m else len(line)
    m = re.compile(r"\s+#").search(line, start)
    return m.start() if m else len(line.rstrip())


def _like(quote: str, value: str) -> str:
    """`value` as YAML, quoted the way the value it replaces was (the file keeps its style)."""
    if quote == '"':
        return json.dumps(value, ensure_ascii=False)
    if quote == "'":
        return "'" + value.replace("'", "''") + "'"
    return _scalar(value)


def set_urls(ff: FeedsFile, new_urls: dict[str, str]) -> None:
    """Replace the url of each source id in `new_urls`, touching only those values."""
    lines = ff.text.split("\n")
    tree = ff._tree(ff.text)
    for item in tree["sources"]:
        source_id = str(item.get("id"))
        if source_id in new_urls:
            row, col = item.lc.value("url")
            end = _value_end(lines[row], col)
            lines[row] = (lines[row][:col] + _like(lines[row][col], new_urls[source_id])
                          + lines[row][end:])
    before = [(s.id, new_urls.get(s.id, s.url)) for s in ff.config.sources]
    ff.save("\n".join(lines), lambda c: None if [(s.id, s.url) for s in c.sources] == before
            else "the edit would change more than those URLs")


def cmd_moved(ff: FeedsFile, args, settings) -> int:
    from .store import open_store

    store = open_store(settings)
    moved = moved_sources(ff.config, store.load_states([s.id for s in ff.config.sources]))
    if not moved:
        print(f"no source of {ff.path} has answered with a permanent redirect")
        return 0
    owners = {s.url: s.id for s in ff.config.sources}
    apply = {}
    for source, url in moved:
        print(f"{source.id}: {source.url} -> {url}")
        if url in owners:
            print(f"  not changed: {url} is already the URL of {owners[url]}; remove one of "
                  "the two sources", file=sys.stderr)
        else:
            apply[source.id] = url
    if not args.apply:
        if apply:
            print(f"`sources moved --apply` writes the new {'URL' if len(apply) == 1 else 'URLs'}"
                  f" into {ff.path}")
        return 0
    if apply:
        set_urls(ff, apply)
        print(f"{len(apply)} {'URL' if len(apply) == 1 else 'URLs'} updated in {ff.path}; the "
              "worker polls the new address and keeps each source's history")
    return 0 if len(apply) == len(moved) else 1


# --- OPML ------------------------------------------------------------------------------------------

def read_opml(path: str) -> list[dict]:
    """Outlines with an xmlUrl, anywhere in the tree: {url, title, site, language, enabled}.
    A DTD is refused (no entity expansion from a file someone sent us)."""
    try:
        data = Path(path).read_bytes() if path != "-" else sys.stdin.buffer.read()
    except OSError as e:
        raise CliError(f"{path}: cannot read: {e.strerror or e}") from None
    if len(data) > MAX_OPML_BYTES:
        raise CliError(f"{path}: larger than {MAX_OPML_BYTES // (1024 * 1024)} MB")
    if b"<!DOCTYPE" in data.upper() or b"<!ENTITY" in data.upper():
        raise CliError(f"{path}: OPML with a DTD or entities is refused")
    try:
        root = ET.fromstring(data)
    except ET.ParseError as e:
        raise CliError(f"{path}: not well-formed XML: {e}") from None
    if root.tag != "opml":
        raise CliError(f"{path}: not an OPML file (root element <{root.tag}>)")
    out = []
    for outline in root.iter("outline"):
        url = (outline.get("xmlUrl") or "").strip()
        if not url:
            continue
        out.append({"url": url, "title": (outline.get("title") or outline.get("text") or "").strip(),
                    "site": (outline.get("htmlUrl") or "").strip() or None,
                    "language": (outline.get("language") or "").strip() or None,
                    # OPML 2.0's commented-out outline: how export-opml writes a disabled one
                    "enabled": (outline.get("isComment") or "").strip().lower() != "true"})
    return out


_HOST_NOISE = re.compile(r"^(www|feeds?|rss|m|ar|arabic)\.")


def slug_for(url: str, site: str | None, taken: set[str]) -> str:
    host = (urlsplit(site or url).hostname or urlsplit(url).hostname or "source").lower()
    while _HOST_NOISE.match(host) and host.count(".") > 1:
        host = _HOST_NOISE.sub("", host, count=1)
    base = host.rsplit(".", 1)[0] if host.count(".") >= 1 else host
    base = re.sub(r"[^a-z0-9]+", "-", base).strip("-") or "source"
    slug, n = base, 2
    while slug in taken:
        slug = f"{base}-{n}"
        n += 1
    taken.add(slug)
    return slug


def cmd_import_opml(ff: FeedsFile, args) -> int:
    outlines = read_opml(args.opml)
    have = {normalize_url(s.url) for s in ff.config.sources}
    taken = {s.id for s in ff.config.sources}
    new, skipped, bad = [], [], []
    tags = [t.strip() for t in args.tags.split(",") if t.strip()] if args.tags else None
    for o in outlines:
        try:
            url = normalize_url(o["url"])
        except ValueError as e:
            bad.append(f"{o['url']!r}: {e}")
            continue
        if url in have:
            skipped.append(o["url"])
            continue
        site = None
        if o["site"]:
            try:
                site = normalize_url(o["site"])
            except ValueError:
                site = None
        have.add(url)
        fields = {"id": slug_for(url, site, taken), "url": url,
                  "title": o["title"] or urlsplit(url).hostname}
        if site:
            fields["site"] = site
        if o["language"] and o["language"] != "ar":
            fields["language"] = o["language"]
        if tags is not None:
            fields["tags"] = tags
        if not o["enabled"]:
            fields["enabled"] = False
        new.append(fields)
    for problem in bad:
        print(f"skipped (invalid): {problem}", file=sys.stderr)
    for url in skipped:
        print(f"skipped (already there): {url}", file=sys.stderr)
    if args.dry_run:
        for f in new:
            print(f"would add {f['id']}: {f['url']}  {f['title']}"
                  + ("  (disabled)" if f.get("enabled") is False else ""))
        print(f"{len(new)} to add, {len(skipped)} duplicates, {len(bad)} invalid (dry run)")
        return 0
    add_sources(ff, new)
    for f in new:
        print(f"added {f['id']}: {f['url']}  {f['title']}"
              + ("  (disabled)" if f.get("enabled") is False else ""))
    print(f"{len(new)} added, {len(skipped)} duplicates skipped, {len(bad)} invalid skipped")
    return 0


def export_opml(config: Config, title: str = "Arabic news aggregator: sources") -> bytes:
    opml = ET.Element("opml", version="2.0")
    head = ET.SubElement(opml, "head")
    ET.SubElement(head, "title").text = title
    ET.SubElement(head, "dateCreated").text = format_datetime(datetime.now(UTC), usegmt=True)
    ET.SubElement(head, "docs").text = "http://opml.org/spec2.opml"
    body = ET.SubElement(opml, "body")
    for s in config.sources:
        attrs = {"type": "rss", "text": s.title, "title": s.title, "xmlUrl": s.url,
                 "language": s.language}
        if s.site:
            attrs["htmlUrl"] = s.site
        cats = [f"/{t}" for t in s.tags] + ([f"/country/{s.country}"] if s.country else [])
        if cats:
            attrs["category"] = ",".join(cats)
        if not s.enabled:
            attrs["isComment"] = "true"  # OPML 2.0: present but commented out
        ET.SubElement(body, "outline", attrs)
    ET.indent(opml)
    return ET.tostring(opml, encoding="utf-8", xml_declaration=True) + b"\n"


def cmd_export_opml(ff: FeedsFile, args) -> int:
    data = export_opml(ff.config)
    if args.output in (None, "-"):
        sys.stdout.buffer.write(data)
        sys.stdout.flush()
    else:
        Path(args.output).write_bytes(data)
        print(f"wrote {len(ff.config.sources)} sources to {args.output}", file=sys.stderr)
    return 0


# --- argparse wiring ------------------------------------------------------------------------------

def add_parser(sub) -> None:
    p = sub.add_parser("sources", help="list and edit the sources in feeds.yaml")
    p.add_argument("--file", dest="feeds_file",
                   help="feeds file (default: $AGG_FEEDS or ./feeds.yaml)")
    ss = p.add_subparsers(dest="sources_command", required=True)
    q = ss.add_parser("list", help="every source, in ranking order")
    q.add_argument("--json", action="store_true")
    q = ss.add_parser("add", help="append a source (last in the ranking); without --id or "
                      "--title, they are read from the feed")
    q.add_argument("url", nargs="?", help="the feed, or a web page that announces its feed")
    q.add_argument("--url", dest="url_option", help=argparse.SUPPRESS)  # the older spelling
    q.add_argument("--id", help="default: from the site's host, e.g. aljazeera")
    q.add_argument("--title", help="default: the feed's title")
    q.add_argument("--site")
    q.add_argument("--country", help="ISO 3166-1 alpha-2, e.g. QA")
    q.add_argument("--tags", help="comma-separated slugs, e.g. gulf,broadcaster")
    q.add_argument("--interval", help="e.g. 10m, 1h30m")
    q.add_argument("--language")
    q.add_argument("--disabled", action="store_true", help="add it with enabled: false")
    for name in ("remove", "enable", "disable"):
        q = ss.add_parser(name, help=f"{name} a source")
        q.add_argument("id")
    q = ss.add_parser("import-opml", help="add the feeds of an OPML file, skipping known URLs")
    q.add_argument("opml", help="OPML file ('-' for stdin)")
    q.add_argument("--tags", help="tags for every imported source")
    q.add_argument("--dry-run", action="store_true")
    q = ss.add_parser("export-opml", help="write the sources as OPML 2.0")
    q.add_argument("-o", "--output", help="file (default: stdout)")
    q = ss.add_parser("moved", help="sources whose feed has moved for good (a permanent "
                      "redirect seen by the worker)")
    q.add_argument("--apply", action="store_true", help="write their new URLs into the file")
    p.set_defaults(func=main)


def main(args, settings) -> int:
    path = args.feeds_file or settings.feeds_path
    try:
        ff = FeedsFile(path)
        c = args.sources_command
        if c == "list":
            return cmd_list(ff, args)
        if c == "add":
            return cmd_add(ff, args, settings)
        if c == "remove":
            return cmd_remove(ff, args)
        if c in ("enable", "disable"):
            return cmd_enable(ff, args, c == "enable")
        if c == "import-opml":
            return cmd_import_opml(ff, args)
        if c == "export-opml":
            return cmd_export_opml(ff, args)
        if c == "moved":
            return cmd_moved(ff, args, settings)
    except CliError as e:
        print(str(e), file=sys.stderr)
        return 1
    return 2
