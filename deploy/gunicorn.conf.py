"""gunicorn settings for the web app (`gunicorn -c deploy/gunicorn.conf.py 'web:create_app()'`).

Behind nginx (deploy/nginx.conf) on loopback. Hot feed requests are answered by
web.cache.FastPath from in-process bytes, so a request is CPU-bound and short: one
process per core with a few threads (keep-alive from nginx's upstream pool, and Redis
round-trips of cold renders overlap)."""
import multiprocessing
import os

bind = os.environ.get("AGG_BIND", "127.0.0.1:8000")
workers = int(os.environ.get("AGG_WEB_WORKERS", multiprocessing.cpu_count()))
worker_class = "gthread"
threads = int(os.environ.get("AGG_WEB_THREADS", "4"))
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
