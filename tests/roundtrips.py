"""A Redis client that counts round trips, for tests of how many a read path makes."""
import redis


class CountingRedis(redis.Redis):
    """Counts each command, and each pipeline once (its commands go in one trip)."""

    trips = 0

    def execute_command(self, *args, **options):
        CountingRedis.trips += 1
        return super().execute_command(*args, **options)

    def pipeline(self, transaction=True, shard_hint=None):
        p = super().pipeline(transaction, shard_hint)
        execute = p.execute

        def counted(raise_on_error=True):
            CountingRedis.trips += 1
            return execute(raise_on_error)

        p.execute = counted
        return p
