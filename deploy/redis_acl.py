"""Prints the `ACL SETUSER` lines for the daemon, operator and watcher users of these settings.

python -m deploy.redis_acl | redis-cli   # after replacing each CHANGE-ME password
"""

from __future__ import annotations

from config import load_settings
from event_bus.acl import setuser_lines
from event_bus.channels import Channels


def main() -> None:
    settings = load_settings()
    for line in setuser_lines(Channels(settings.bus.channel_prefix)):
        print(line)


if __name__ == "__main__":
    main()
