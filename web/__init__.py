"""Flask app factory. Each area is a blueprint; the Redis client is an extension set up in
init_app, never a module-level global."""
from __future__ import annotations

import os

from flask import Flask

from aggregator.settings import Settings


def create_app(test_config: dict | None = None) -> Flask:
    app = Flask(__name__)
    settings = Settings.from_env()
    app.config.from_mapping(
        AGG_SETTINGS=settings,
        # None: frame-ancestors * for /embed/*; a space-separated source list otherwise.
        EMBED_FRAME_ANCESTORS=os.environ.get("AGG_EMBED_FRAME_ANCESTORS", "*"),
        MAX_CONTENT_LENGTH=64 * 1024,  # we take no uploads; refuse large bodies early
    )
    if test_config:
        app.config.from_mapping(test_config)

    from . import extensions

    extensions.init_app(app)

    from . import embed, feeds, ops, pages

    app.register_blueprint(feeds.bp)
    app.register_blueprint(pages.bp)
    app.register_blueprint(embed.bp)
    app.register_blueprint(ops.bp)
    return app
