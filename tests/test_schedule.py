import random
from datetime import datetime, timedelta, timezone

import pytest

from aggregator.schedule import MAX_BACKOFF, after_poll, backoff_delay, initial_poll
from aggregator.types import FetchResult, Outcome, Source, SourceState

NOW = datetime(2026, 11, 29, 12, 0, tzinfo=timezone.utc)
SRC = Source(id="s", url="https://example.org/rss", title="s", interval=600)


def result(outcome, status=None, **kw):
    return FetchResult(outcome=outcome, url=SRC.url, final_url=SRC.url, http_status=status, **kw)


@pytest.mark.parametrize("failures, expected", [
    (0, 600), (1, 600), (2, 1200), (3, 2400), (4, 4800), (6, 19200), (7, 21600), (30, 21600),
])
def test_backoff_doubles_and_caps_at_six_hours(failures, expected):
    assert backoff_delay(600, failures) == expected


@pytest.mark.parametrize("outcome, status", [
    (Outcome.OK, 200), (Outcome.NOT_MODIFIED, 304),
])
def test_success_resets_failures_and_polls_at_interval(outcome, status):
    failing = SourceState(consecutive_failures=3, failing_since=NOW - timedelta(hours=1), errors=3)
    st = after_poll(SRC, failing, result(outcome, status, etag='"x"'), NOW, random.Random(1))
    assert st.consecutive_failures == 0 and st.failing_since is None
    assert st.errors == 3  # the total is history, not reset
    assert st.etag == '"x"' and st.last_success == NOW and st.last_status == outcome.value
    assert timedelta(seconds=540) <= st.next_poll - NOW <= timedelta(seconds=660)


def test_failures_back_off_on_schedule_and_are_never_abandoned():
    st, rng, delays = SourceState(), random.Random(2), []
    for _ in range(12):
        st = after_poll(SRC, st, result(Outcome.HTTP_5XX, 500, error="HTTP 500"), NOW, rng)
        delays.append((st.next_poll - NOW).total_seconds())
    assert st.consecutive_failures == 12 and st.errors == 12 and st.failing_since == NOW
    for n, d in enumerate(delays, start=1):
        assert d == pytest.approx(backoff_delay(600, n), rel=0.1)
    assert max(delays) <= MAX_BACKOFF.total_seconds() * 1.1
    assert st.next_poll is not None


@pytest.mark.parametrize("wait", [60, 120, 3600])
def test_retry_after_is_never_undercut(wait):
    until = NOW + timedelta(seconds=wait)
    for seed in range(20):
        st = after_poll(SRC, SourceState(), result(Outcome.RATE_LIMITED, 429, retry_after=until),
                        NOW, random.Random(seed))
        assert st.next_poll >= until
        assert st.retry_after_until == until


def test_retry_after_is_capped_at_a_day():
    st = after_poll(SRC, SourceState(),
                    result(Outcome.HTTP_5XX, 503, retry_after=NOW + timedelta(days=30)),
                    NOW, random.Random(0))
    assert st.next_poll <= NOW + timedelta(days=1, seconds=5)


def test_gone_disables_and_says_so():
    st = after_poll(SRC, SourceState(), result(Outcome.GONE, 410), NOW, random.Random(0))
    assert st.next_poll is None
    # read by operators in logs, alerts and `stats`: a time to the minute, its zone named
    assert st.disabled_reason == ("410 Gone at 2026-11-29 12:00 UTC: remove it from "
                                  "feeds.yaml or fix its URL")
    assert initial_poll(SRC, st, NOW, random.Random(0)) is None


def test_permanent_redirect_is_kept_as_suggestion():
    st = after_poll(SRC, SourceState(),
                    result(Outcome.OK, 200, permanent_redirect="https://new.example.org/rss"),
                    NOW, random.Random(0))
    assert st.suggested_url == "https://new.example.org/rss"


def test_a_success_lifts_a_410_verdict():
    gone = after_poll(SRC, SourceState(), result(Outcome.GONE, 410), NOW, random.Random(0))
    back = after_poll(SRC, gone, result(Outcome.OK, 200), NOW + timedelta(hours=1),
                      random.Random(0))
    assert gone.disabled_reason and back.disabled_reason is None
    assert initial_poll(SRC, back, NOW + timedelta(hours=1), random.Random(0)) is not None


@pytest.mark.parametrize("outcome, status, redirect, kept", [
    (Outcome.OK, 200, "https://new.example.org/rss", "https://new.example.org/rss"),
    (Outcome.NOT_MODIFIED, 304, "https://new.example.org/rss", "https://new.example.org/rss"),
    (Outcome.OK, 200, None, None),  # the old URL answers again itself: the move was undone
    (Outcome.NOT_MODIFIED, 304, None, None),
    (Outcome.TIMEOUT, None, None, "https://new.example.org/rss"),  # a failure proves nothing
    (Outcome.HTTP_5XX, 500, None, "https://new.example.org/rss"),
])
def test_a_suggested_url_lasts_while_the_redirect_does(outcome, status, redirect, kept):
    before = SourceState(suggested_url="https://new.example.org/rss")
    st = after_poll(SRC, before, result(outcome, status, permanent_redirect=redirect), NOW,
                    random.Random(0))
    assert st.suggested_url == kept


@pytest.mark.parametrize("stored, lo, hi", [
    (NOW + timedelta(minutes=7), 420, 420),  # restart resumes the stored time
    (NOW - timedelta(hours=2), 0, 10),  # overdue: soon, but spread
    (None, 0, 10),  # new source: soon, spread
])
def test_initial_poll(stored, lo, hi):
    when = initial_poll(SRC, SourceState(next_poll=stored), NOW, random.Random(3))
    assert lo <= (when - NOW).total_seconds() <= hi


def test_skip_reason_for_one_off_polls():
    from aggregator.schedule import skip_reason

    assert skip_reason(SourceState(), NOW) is None
    assert "410" in skip_reason(SourceState(disabled_reason="410 Gone at x"), NOW)
    assert "Retry-After" in skip_reason(
        SourceState(retry_after_until=NOW + timedelta(minutes=1)), NOW)
    assert skip_reason(SourceState(retry_after_until=NOW - timedelta(seconds=1)), NOW) is None


def test_editing_a_source_url_resets_what_belonged_to_the_old_one():
    from aggregator.schedule import for_url

    old = SourceState(url="https://old.example/rss", etag='"e"', body_hash="h", errors=7,
                      consecutive_failures=3, failing_since=NOW, disabled_reason="410 Gone",
                      retry_after_until=NOW, suggested_url="https://x/", next_poll=None)
    fresh = for_url(SRC, old)
    assert fresh.url == SRC.url and fresh.errors == 7  # history stays
    assert (fresh.etag, fresh.body_hash, fresh.disabled_reason, fresh.consecutive_failures,
            fresh.retry_after_until, fresh.failing_since) == (None, None, None, 0, None, None)
    same = SourceState(url=SRC.url, etag='"e"')
    assert for_url(SRC, same) is same
    assert for_url(SRC, SourceState(etag='"e"')).etag == '"e"'  # state from before urls
