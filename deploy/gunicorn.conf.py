"""gunicorn settings for the web app (`gunicorn -c deploy/gunicorn.conf.py 'web:create_app()'`).

Behind nginx (deploy/nginx.conf) on loopback. Hot feed requests are answered by
web.cache.FastPath from in-process bytes and pages from web/pagecache.py, so most requests
are CPU-bound and short: one process per core. But a re-render (a page or feed after a
store change) holds its thread for 0.1-2 s under ingest, and with 4 threads two or three
renders left the cached requests queueing behind them; 8 threads keep them moving
(bench/load.py, one after the other: p50 430 -> 130 ms, p99 3.0 -> 1.4 s, 3x requests)."""
import multiprocessing
import os

bind = os.environ.get("AGG_BIND", "127.0.0.1:8000")
workers = int(os.environ.get("AGG_WEB_WORKERS", multiprocessing.cpu_count()))
worker_class = "gthread"
threads = int(os.environ.get("AGG_WEB_THREADS", "8"))
keepalive = 30  # seconds; nginx's upstream keepalive reuses connections
timeout = 30
graceful_timeout = 20
max_requests = 0  # the output cache lives in the worker: do not recycle it for nothing
accesslog = os.environ.get("AGG_ACCESS_LOG")  # None: off (nginx logs requests)
errorlog = "-"
loglevel = os.environ.get("AGG_LOG_LEVEL", "info")
forwarded_allow_ips = "127.0.0.1"
proc_name = "aggregator-web"
# Not preload_app: each worker opens its own Redis connection after the fork.
