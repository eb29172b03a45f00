"""Test-wide fixtures: Redis servers and the IB Gateway simulator."""

pytest_plugins = ["tests.fixtures.redis_server", "tests.fixtures.ibsim"]
