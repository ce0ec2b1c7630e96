"""Arabic news aggregator: fetch, parse, normalise, store, group and syndicate feeds."""
__version__ = "0.1.0"
