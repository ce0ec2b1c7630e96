"""One exception root with branches; third-party errors are wrapped at the boundary."""


class AggregatorError(Exception):
    """Root of every error this package raises on purpose."""


class ConfigError(AggregatorError):
    """feeds.yaml is invalid. `problems` holds one "file:line: field: message" per issue."""

    def __init__(self, path, problems):
        self.path = str(path)
        self.problems = list(problems)
        super().__init__("\n".join(self.problems) or f"{path}: invalid")


class SettingsError(AggregatorError):
    """Environment variables that cannot be used. `problems` holds one "NAME: message" each."""

    def __init__(self, problems):
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


class InputError(AggregatorError):
    """Input lines a command cannot use. `problems` holds one "line N: message" per line."""

    def __init__(self, problems):
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


class DiscoveryError(AggregatorError):
    """A URL given to `sources add` that is not a feed, nor a page announcing one.
    `passing`: the failure may pass (the server is down, slow or refused us), so adding the
    URL without reading it can make sense; a 404 or a body that is no feed cannot."""

    def __init__(self, message: str, passing: bool = False):
        super().__init__(message)
        self.passing = passing


class ParseError(AggregatorError):
    """Bytes that are not a feed we can read (outcome not-a-feed)."""


class StoreError(AggregatorError):
    """Redis unreachable or refused a command."""
