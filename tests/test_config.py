"""feeds.yaml: interval parsing, Source values, file:line problems, hot reload, the repo's file."""
from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from aggregator.config import (
    ISO_COUNTRIES,
    Config,
    ConfigWatcher,
    check_config_main,
    load_config,
    load_config_or_last_good,
    load_config_text,
    parse_interval,
)
from aggregator.errors import ConfigError
from aggregator.types import Source

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(__file__).resolve().parent / "data" / "config"


@pytest.mark.parametrize("value, seconds", [
    ("90s", 90),
    ("10m", 600),
    ("1h", 3600),
    ("1h30m", 5400),
    ("2h5m10s", 7510),
    ("90m", 5400),
    (" 10M ", 600),
    (600, 600),
    ("600", 600),
    ("10", 10),  # the minimum of 1m is a feeds.yaml rule, not the parser's
    (1, 1),
])
def test_parse_interval(value, seconds):
    assert parse_interval(value) == seconds


@pytest.mark.parametrize("value, message", [
    ("", "invalid interval ''"),
    ("10x", "invalid interval '10x'"),
    ("m", "invalid interval 'm'"),
    ("30m1h", "invalid interval '30m1h'"),  # units out of order
    ("1h 30m", "invalid interval"),
    ("١٠m", "invalid interval"),  # Arabic-Indic digits are not accepted silently
    ("0s", "must be positive"),
    (0, "must be positive"),
    (-60, "must be positive"),
    (True, "not True"),
    (1.5, "not 1.5"),
    (None, "not None"),
])
def test_parse_interval_rejects(value, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        parse_interval(value)


@pytest.mark.parametrize("site, outlet", [
    ("https://www.bbc.com/arabic", "bbc.com/arabic"),
    ("https://www.bbc.com/arabic/", "bbc.com/arabic"),  # sections of one outlet agree
    ("http://BBC.com/arabic", "bbc.com/arabic"),
    ("https://www.bbc.com/news", "bbc.com/news"),  # another outlet on the same host
    ("https://arabic.cnn.com", "arabic.cnn.com"),
    ("https://www.skynewsarabia.com/", "skynewsarabia.com"),
    (None, "feed-id"),  # no site: an outlet of its own
    ("", "feed-id"),
    ("https://[::1", "feed-id"),  # unreadable: the same
])
def test_a_feeds_outlet_is_its_site(site, outlet):
    assert Source(id="feed-id", url="https://example.com/rss", title="x", site=site).outlet == outlet


def test_iso_country_list_is_complete():
    assert len(ISO_COUNTRIES) == 249
    assert {"QA", "GB", "PS", "SS", "EH", "AX"} <= ISO_COUNTRIES
    assert "UK" not in ISO_COUNTRIES and "XK" not in ISO_COUNTRIES


def test_good_file_values():
    path = DATA / "good.yaml"
    config = load_config(path)
    assert config.path == str(path)
    assert len(config.digest) == 64
    assert config.sources == (
        Source(
            id="aljazeera",
            # scheme and host lowercased, path untouched
            url="https://www.aljazeera.net/aljazeerarss/a7c186be-1adb-4b11-a982-4783e765316e/"
                "4e17ecdc-8fb9-40de-a5d6-d00f72384a51",
            title="الجزيرة نت",
            site="https://www.aljazeera.net",
            language="ar",
            country="QA",  # from defaults
            tags=("pan-arab",),  # from defaults
            interval=900,  # defaults: 15m
            enabled=True,
            rank=0,
        ),
        Source(
            id="bbc_arabic",
            url="https://feeds.bbci.co.uk/arabic/rss.xml",
            title="بي بي سي عربي",
            country="GB",
            tags=("broadcaster", "international"),  # replaces the default tags
            interval=5400,
            rank=1,
        ),
        Source(
            id="enab-baladi",
            url="https://www.enabbaladi.net/archives/category/news/feed",
            title="عنب بلدي",
            language="ar-SY",
            country="SY",
            tags=(),  # an explicit empty list beats the default
            interval=90,
            enabled=False,
            rank=2,
        ),
    )


def test_digest_follows_content():
    text = (DATA / "good.yaml").read_text(encoding="utf-8")
    assert load_config_text(text).digest == load_config(DATA / "good.yaml").digest
    assert load_config_text(text + "# edited\n").digest != load_config_text(text).digest


def _problems(path) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.path == str(path)
    return info.value.problems


@pytest.mark.parametrize("name, line, field, message", [
    ("bad_unknown_key", 5, "sources[0].intervl", "unknown key 'intervl' (did you mean 'interval'?)"),
    ("bad_unknown_default", 2, "defaults.langauge",
     "unknown key 'langauge' (did you mean 'language'?)"),
    ("bad_unknown_top_key", 7, "refresh", "unknown key 'refresh' (allowed: defaults, sources)"),
    ("bad_duplicate_id", 5, "sources[1].id", "duplicate id 'bbc_arabic' (first at line 2)"),
    ("bad_duplicate_url", 7, "sources[1].url", "duplicate url "),  # differs only in case
    ("bad_url", 3, "sources[0].url", "'feeds.bbci.co.uk/arabic/rss.xml' is not an absolute"),
    ("bad_interval", 5, "sources[0].interval", "interval '30s' is below the minimum of 1m"),
    ("bad_country", 5, "sources[0].country", "'UK' is not an ISO 3166-1 code"),
    ("bad_id", 2, "sources[0].id", "'BBC Arabic' is not a slug"),
    ("bad_missing_title", 4, "sources[0].title", "required field is missing"),
    ("bad_yaml_syntax", 4, "yaml", "while scanning a quoted scalar"),
    ("bad_wrong_type", 5, "sources[0].tags", "input should be a valid list (got 'maghreb')"),
])
def test_bad_file_first_problem(name, line, field, message):
    path = DATA / f"{name}.yaml"
    problems = _problems(path)
    assert problems[0].startswith(f"{path}:{line}: {field}: {message}"), problems


def test_duplicate_url_names_first_line():
    path = DATA / "bad_duplicate_url.yaml"
    assert _problems(path) == [
        f"{path}:7: sources[1].url: duplicate url 'HTTPS://Feeds.BBCI.co.uk/arabic/rss.xml'"
        " (first at line 3)"
    ]


def test_wrong_types_are_both_reported():
    path = DATA / "bad_wrong_type.yaml"
    assert [p.split(": ")[0:2] for p in _problems(path)] == [
        [f"{path}:5", "sources[0].tags"],
        [f"{path}:6", "sources[0].enabled"],
    ]


def test_every_problem_in_a_file_is_reported_in_order():
    path = DATA / "bad_many.yaml"
    problems = _problems(path)
    assert [p.split(": ")[:2] for p in problems] == [
        [f"{path}:3", "defaults.interval"],
        [f"{path}:9", "sources[0].country"],
        [f"{path}:10", "sources[1].title"],  # missing: points at the entry's first line
        [f"{path}:11", "sources[1].url"],
        [f"{path}:12", "sources[2].id"],
        [f"{path}:15", "sources[2].tags[1]"],
        [f"{path}:16", "sources[2].titel"],
    ]
    assert problems[-1] == f"{path}:16: sources[2].titel: unknown key 'titel' (did you mean 'title'?)"


@pytest.mark.parametrize("text, expected", [
    ("", "<string>:1: sources: the file is empty"),
    ("- a\n", "<string>:1: document: expected a mapping"),
    ("sources: 3\n", "<string>:1: sources: input should be a valid list (got 3)"),
    ("defaults: {}\n", "<string>:1: sources: required field is missing"),
    ("sources:\n  - just a string\n", "<string>:2: sources[0]: expected a mapping"),
    ("sources: []\nsources: []\n", "<string>:2: yaml: while constructing a mapping"),
    # the hand-editing mistakes, said in the operator's terms
    ("sources:\n  - id: a\n\turl: https://a.example/rss\n",
     "<string>:3: yaml: while scanning for the next token; found character '\\t' that cannot "
     "start any token (indent with spaces: YAML does not allow tabs)"),
    ("sources:\n  - id: a\n    url: https://a.example/rss\n  title: A\n",
     "<string>:4: yaml: while parsing a block collection (line 2); expected <block end>, but "
     "found '?' (this line is indented differently from the lines of its source above)"),
    ("sources:\n  - id: a\n    title: الشرق: أخبار\n",
     "<string>:3: yaml: mapping values are not allowed here (a value with ': ' in it needs "
     "quotes)"),
])
def test_structural_problems(text, expected):
    with pytest.raises(ConfigError) as info:
        load_config_text(text)
    assert info.value.problems[0].startswith(expected), info.value.problems


def test_missing_file_is_a_config_error(tmp_path):
    path = tmp_path / "nope.yaml"
    assert _problems(path)[0].startswith(f"{path}:1: file: cannot read")


def test_repository_feeds_yaml_is_valid():
    config = load_config(ROOT / "feeds.yaml")
    ids = [s.id for s in config.sources]
    assert 20 <= len(ids) <= 30
    for outlet in ("aljazeera", "bbc_arabic", "skynewsarabia", "alarabiya", "france24_ar",
                   "rt_arabic", "cnn_arabic", "anadolu_ar", "aawsat", "enab_baladi"):
        assert outlet in ids
    assert ids[0] == "aljazeera" and config.sources[0].rank == 0
    assert all(s.country and s.tags and s.url.startswith("https://") for s in config.sources)
    assert all(s.interval >= 60 and s.language == "ar" for s in config.sources)


def test_check_config_main(capsys):
    assert check_config_main(DATA / "good.yaml") == 0
    out, err = capsys.readouterr()
    assert out == "OK: 3 sources (2 enabled)\n" and err == ""

    path = DATA / "bad_many.yaml"
    assert check_config_main(path) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err.splitlines() == _problems(path)


# --------------------------------------------------------------------------- watcher


class RecordingLog:
    def __init__(self):
        self.errors: list[str] = []

    def error(self, msg, *args):
        self.errors.append(msg % args)

    def info(self, msg, *args):
        pass

    warning = info


SOURCE = """\
  - id: {id}
    url: https://example.org/{id}.xml
    title: {id}
"""


def _write(path: Path, *ids: str, extra: str = "") -> None:
    path.write_text("sources:\n" + "".join(SOURCE.format(id=i) for i in ids) + extra,
                    encoding="utf-8")


def test_watcher_applies_valid_edits_and_keeps_last_good(tmp_path):
    path = tmp_path / "feeds.yaml"
    _write(path, "one")
    seen: list[Config] = []
    log = RecordingLog()
    watcher = ConfigWatcher(path, on_change=seen.append, log=log)
    assert watcher.current is None

    assert watcher.check() is True
    assert [s.id for s in seen[-1].sources] == ["one"]
    assert watcher.check() is False  # unchanged
    assert len(seen) == 1

    _write(path, "one", "two")
    assert watcher.check() is True
    assert [(s.id, s.rank) for s in seen[-1].sources] == [("one", 0), ("two", 1)]
    good = watcher.current
    assert good is seen[-1]

    # A bad edit: logged with file:line, the previous config stays in force.
    _write(path, "one", "two", extra="    intervl: 5m\n")
    edited = path.stat().st_mtime
    assert watcher.check() is False
    assert watcher.current is good and len(seen) == 2
    assert log.errors[0] == (
        f"{path}:8: sources[1].intervl: unknown key 'intervl' (did you mean 'interval'?)"
    )
    logged = len(log.errors)

    # Logged once per bad edit, even when the file is touched again without changing.
    assert watcher.check() is False
    os.utime(path, ns=(1, 1))
    assert watcher.check() is False
    assert len(log.errors) == logged

    # ... and kept for operators (/status, stats): what is wrong, since the file's edit.
    assert watcher.rejected.problems[0] == log.errors[0]
    assert watcher.rejected.since.timestamp() == pytest.approx(edited)

    # Fixing it applies again.
    _write(path, "one", "three")
    assert watcher.check() is True
    assert [s.id for s in watcher.current.sources] == ["one", "three"]
    assert seen[-1] is watcher.current and len(seen) == 3
    assert watcher.rejected is None


def test_a_process_started_during_a_bad_edit_runs_the_last_good_config(tmp_path):
    path = tmp_path / "feeds.yaml"
    _write(path, "one", "two")
    good = load_config(path)
    saved = [good.data]  # what Store.keep_good_config keeps in Redis
    assert load_config_or_last_good(path, lambda: None) == (good, None)

    _write(path, "one", "two", extra="    intervl: 5m\n")
    config, rejected = load_config_or_last_good(path, lambda: saved[0])
    assert [s.id for s in config.sources] == ["one", "two"] and config.digest == good.digest
    assert rejected.problems == (
        f"{path}:8: sources[1].intervl: unknown key 'intervl' (did you mean 'interval'?)",)
    assert rejected.since.timestamp() == pytest.approx(path.stat().st_mtime)

    # A watcher started in that state does not log the same bad file again, and applies a fix.
    log = RecordingLog()
    seen: list[Config] = []
    watcher = ConfigWatcher(path, on_change=seen.append, log=log, initial=config,
                            rejected=rejected)
    assert watcher.check() is False and log.errors == [] and watcher.rejected is rejected
    _write(path, "one", "three")
    assert watcher.check() is True and watcher.rejected is None
    assert [s.id for s in seen[-1].sources] == ["one", "three"]

    # Nothing kept (a first start), or a kept file today's rules reject: the file's own error.
    _write(path, "one", extra="    intervl: 5m\n")
    for kept in (None, b"", b"sources: []\nunknown: 1\n"):
        with pytest.raises(ConfigError) as e:
            load_config_or_last_good(path, lambda: kept)
        assert e.value.problems == [
            f"{path}:5: sources[0].intervl: unknown key 'intervl' (did you mean 'interval'?)"]

    # An unreadable file is a problem too.
    path.unlink()
    config, rejected = load_config_or_last_good(path, lambda: saved[0])
    assert config.digest == good.digest and "cannot read" in rejected.problems[0]


def test_watcher_with_initial_config_and_missing_file(tmp_path):
    path = tmp_path / "feeds.yaml"
    _write(path, "one")
    initial = load_config(path)
    seen: list[Config] = []
    log = RecordingLog()
    watcher = ConfigWatcher(path, on_change=seen.append, log=log, initial=initial)
    assert watcher.check() is False and seen == []  # same content: nothing to apply

    path.unlink()
    assert watcher.check() is False and watcher.check() is False
    assert len(log.errors) == 1 and str(path) in log.errors[0]
    assert watcher.current is initial

    _write(path, "two")
    assert watcher.check() is True
    assert [s.id for s in seen[-1].sources] == ["two"]


@pytest.mark.parametrize("interval, ok", [
    ("1m", True), ("24h", True), ("1440m", True), ("86400", True),
    ("24h1m", False), ("2d", False), ("99999999h", False),
])
def test_an_interval_runs_from_a_minute_to_a_day(tmp_path, interval, ok):
    path = tmp_path / "feeds.yaml"
    path.write_text("sources:\n  - id: bbc\n    url: https://feeds.bbci.co.uk/arabic/rss.xml\n"
                    f"    title: BBC\n    interval: {interval}\n", encoding="utf-8")
    if ok:
        assert load_config(path).sources[0].interval <= 86400
    else:
        (problem,) = _problems(path)
        assert problem.startswith(f"{path}:5: sources[0].interval: ")
        assert "maximum of 24h" in problem or "write it like" in problem, problem


def test_a_yes_where_a_boolean_belongs_says_true_or_false(tmp_path):
    path = tmp_path / "feeds.yaml"
    path.write_text("sources:\n  - id: bbc\n    url: https://feeds.bbci.co.uk/arabic/rss.xml\n"
                    "    title: BBC\n    enabled: yes\n", encoding="utf-8")
    assert _problems(path) == [f"{path}:5: sources[0].enabled: input should be a valid "
                               "boolean (got 'yes'): write true or false"]


def test_a_number_where_text_belongs_says_to_quote_it(tmp_path):
    path = tmp_path / "feeds.yaml"
    path.write_text("sources:\n  - id: bbc\n    url: https://feeds.bbci.co.uk/arabic/rss.xml\n"
                    "    title: 2024\n", encoding="utf-8")
    (got,) = _problems(path)
    assert got.endswith('(got 2024): quote it to keep it as text, e.g. "2024"'), got
