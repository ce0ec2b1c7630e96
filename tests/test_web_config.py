"""The web app follows feeds.yaml edits like the worker: no restart needed."""
import time

from web import create_app


def feeds(ids):
    lines = ["sources:"]
    for sid in ids:
        lines += [f"  - id: {sid}", f"    url: https://{sid}.example.org/rss.xml",
                  f"    title: {sid}"]
    return "\n".join(lines) + "\n"


def test_sources_added_to_feeds_yaml_appear_without_restart(redis_client, keys, tmp_path):
    path = tmp_path / "feeds.yaml"
    path.write_text(feeds(["alpha"]), encoding="utf-8")
    app = create_app({"TESTING": True, "REDIS_CLIENT": redis_client,
                      "AGG_KEY_PREFIX": keys.prefix, "AGG_FEEDS": str(path)})
    client = app.test_client()
    assert client.get("/feeds/sources/alpha.atom").status_code == 200
    assert client.get("/feeds/sources/beta.atom").status_code == 404
    path.write_text(feeds(["alpha", "beta"]), encoding="utf-8")
    time.sleep(1.2)
    assert client.get("/feeds/sources/beta.atom").status_code == 200
    # An invalid edit keeps the last good list.
    path.write_text("sources:\n  - id: Bad Id\n", encoding="utf-8")
    time.sleep(1.2)
    assert client.get("/feeds/sources/beta.atom").status_code == 200
