"""Environment variables: a bad value stops a process at its start, naming the variable.

Before, AGG_TIMEZONE=Mars/Base served a 500 on every page and feed while /healthz said
ok, and AGG_POOL_SIZE=x ended `stats` and worker.py in a ValueError traceback."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from aggregator.errors import SettingsError
from aggregator.settings import Settings, environment_problems

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("name, value, problem", [
    ("AGG_TIMEZONE", "Mars/Base", "AGG_TIMEZONE: 'Mars/Base' is not a time zone"),
    ("AGG_TIMEZONE", "../../etc/passwd", "AGG_TIMEZONE: '../../etc/passwd' is not a time zone"),
    ("AGG_POOL_SIZE", "x", "AGG_POOL_SIZE: 'x' is not a whole number"),
    ("AGG_POOL_SIZE", "0", "AGG_POOL_SIZE: '0' must be from 1 to 256"),
    ("AGG_RETENTION_DAYS", "abc", "AGG_RETENTION_DAYS: 'abc' is not a whole number"),
    ("AGG_RETENTION_MAX_ITEMS", "-5", "AGG_RETENTION_MAX_ITEMS: '-5' must be from 1 up"),
    ("AGG_HEALTH_MAX_HEARTBEAT_AGE", "2m", "AGG_HEALTH_MAX_HEARTBEAT_AGE: '2m' is not a number"),
    ("AGG_DIGITS", "roman", "AGG_DIGITS: 'roman' is not one of arabic, latin"),
    ("AGG_MONTHS", "hijri", "AGG_MONTHS: 'hijri' is not one of gregorian, levantine"),
    ("AGG_HIJRI", "maybe", "AGG_HIJRI: 'maybe' is not one of"),
    ("AGG_PUBLIC_URL", "news.example", "AGG_PUBLIC_URL: 'news.example' is not an absolute"),
])
def test_each_bad_value_is_named(name, value, problem):
    [got] = environment_problems({name: value})
    assert got.startswith(problem)
    with pytest.raises(SettingsError):
        Settings.from_env({name: value})


@pytest.mark.parametrize("env", [
    {}, {"AGG_TIMEZONE": "Africa/Cairo", "AGG_POOL_SIZE": "4", "AGG_DIGITS": "latin",
         "AGG_MONTHS": "levantine", "AGG_HIJRI": "off", "AGG_PUBLIC_URL": "https://news.example/",
         "AGG_HEALTH_MAX_HEARTBEAT_AGE": "90.5", "AGG_PARSE_PROCESSES": "0"},
])
def test_good_values_pass(env):
    assert environment_problems(env) == []
    Settings.from_env(env)


@pytest.mark.parametrize("command", [["worker.py", "--once"], ["-m", "aggregator", "stats"],
                                     ["-m", "aggregator", "run", "--port", "1"]])
def test_processes_refuse_to_start_with_every_problem_and_no_traceback(command, tmp_path):
    env = os.environ | {"AGG_TIMEZONE": "Mars/Base", "AGG_POOL_SIZE": "x",
                        "AGG_DATA_DIR": str(tmp_path)}
    r = subprocess.run([sys.executable, *command], cwd=ROOT, env=env, capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 2, r.stderr
    assert "AGG_TIMEZONE: 'Mars/Base' is not a time zone" in r.stderr
    assert "AGG_POOL_SIZE: 'x' is not a whole number" in r.stderr
    assert "Traceback" not in r.stderr
    assert not any(tmp_path.iterdir())  # nothing started: no embedded Redis


def test_the_web_app_refuses_to_be_built_with_a_bad_zone(monkeypatch):
    from web import create_app

    monkeypatch.setenv("AGG_TIMEZONE", "Mars/Base")
    with pytest.raises(SettingsError, match="AGG_TIMEZONE"):
        create_app()


def test_once_with_redis_unreachable_says_so_in_one_line(tmp_path):
    env = os.environ | {"REDIS_URL": "redis://127.0.0.1:9/0", "AGG_FEEDS": str(ROOT / "feeds.yaml")}
    r = subprocess.run([sys.executable, "worker.py", "--once"], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr
    assert r.stderr.strip().splitlines()[-1].endswith("(REDIS_URL=redis://127.0.0.1:9/0)")


def test_the_file_writer_refuses_to_start_without_a_public_url(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "AGG_PUBLIC_URL"}
    r = subprocess.run([sys.executable, "-m", "web.cache", "prerender", "--out", str(tmp_path)],
                       cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "AGG_PUBLIC_URL is not set" in r.stderr, r.stderr
    assert not any(tmp_path.iterdir())  # no files naming http://localhost/
