"""Redis ACL rules for the daemon, an operator and a watcher, built from the channel names.

Whoever may PUBLISH on `trading:signal:*` or `trading:control` can trade, so each user gets
only the commands, keys and channels its role needs. Two facts of Redis ACLs shape the rules:

- Channel permissions (`&pattern`) cover PUBLISH and subscribing alike; what tells a watcher
  from an operator is the PUBLISH command itself (and EVALSHA, whose script publishes).
- PSUBSCRIBE is allowed only for a pattern that is *literally* one of the user's `&` patterns
  (`&trading:bar:*` allows `PUBLISH trading:bar:AAPL` but not `PSUBSCRIBE trading:bar:AAPL`),
  so every pattern a module subscribes to is listed as it is. The bus SUBSCRIBEs an exact
  channel name (the strategy's per-symbol channels, `control`), which `&trading:bar:*`
  covers like PUBLISH: the rules do not depend on the configured symbols.

Redis 6.2 gives a new user every channel (`acl-pubsub-default allchannels`), Redis 7 none:
the rules start from `resetchannels` (and `resetkeys`, `-@all`) to mean the same on both.

`python -m deploy.redis_acl` prints the `ACL SETUSER` lines for the current settings.
"""

from __future__ import annotations

from collections.abc import Sequence

from event_bus.channels import Channels

# Every connection: redis-py's hand-shake (AUTH is always allowed), its health-check PING.
CONNECTION = ("+ping", "+hello", "+client|setname", "+client|id", "+select")

# The bus: one EVALSHA per batch (its script PUBLISHes and XADDs), the journal replay after a
# reconnect, the subscriber connection.
BUS = (
    "+evalsha",
    "+script|load",
    "+publish",
    "+xadd",
    "+xrange",
    "+subscribe",
    "+unsubscribe",
    "+psubscribe",
    "+punsubscribe",
)

# `tail` through the bus: SUBSCRIBE for an exact channel, PSUBSCRIBE for a pattern.
SUBSCRIBING = ("+subscribe", "+unsubscribe", "+psubscribe", "+punsubscribe")

# The journal's consumer group (storage) and its dead-letter stream; XINFO tells storage when
# the journal dropped entries before it read them.
JOURNAL_GROUP = (
    "+xgroup|create",
    "+xreadgroup",
    "+xautoclaim",
    "+xack",
    "+xinfo|stream",
    "+xinfo|groups",
)

# Heartbeat keys, execution's state (signal decisions, fills published, the kill switch),
# `status`. HGET reads the hash of fills that versions before the key per fill wrote.
STATE = ("+get", "+set", "+del", "+hget")
STATUS = ("+get", "+scan", "+mget")

# Reading the journal by hand (redis-cli XRANGE, XREVRANGE, XREAD, XLEN, XINFO STREAM).
JOURNAL_READ = ("+xrange", "+xrevrange", "+xread", "+xlen", "+xinfo|stream")

ROLES = ("daemon", "operator", "watcher")


def acl_rules(channels: Channels) -> dict[str, list[str]]:
    """role -> its ACL rules, without `on` and the password (`ACL SETUSER name on >pw ...`)."""
    prefix = channels.prefix
    kinds = [channels.instrument(kind, "*") for kind in ("tick", "bar", "signal", "order", "fill")]
    system = channels.system("*")
    # `tail` subscribes to `trading:*` by default, or `trading:{kind}:*` / `trading:system:*`.
    watchable = [channels.everything, *kinds, system, channels.control]
    return {
        "daemon": _rules(
            commands=[*CONNECTION, *BUS, *JOURNAL_GROUP, *STATE, *STATUS],
            keys=[channels.journal, channels.dead_letter, f"{prefix}:state:*", f"{prefix}:alive:*"],
            # `control` is here because execution subscribes to it; see the module docstring.
            channels=[*kinds, system, channels.control],
        ),
        "operator": _rules(
            # `halt` / `resume` set and delete the kill switch, then publish through the bus.
            commands=[*CONNECTION, *BUS, "+set", "+del", *STATUS, *JOURNAL_READ],
            keys=[channels.journal, channels.state_key("halt"), f"{prefix}:alive:*"],
            channels=watchable,
        ),
        "watcher": _rules(
            commands=[*CONNECTION, *SUBSCRIBING, *STATUS, *JOURNAL_READ],
            keys=[channels.journal, channels.state_key("halt"), f"{prefix}:alive:*"],
            channels=watchable,
        ),
    }


def _rules(*, commands: Sequence[str], keys: Sequence[str], channels: Sequence[str]) -> list[str]:
    return [
        "resetkeys",
        "resetchannels",
        "-@all",
        *dict.fromkeys(commands),
        *(f"~{key}" for key in dict.fromkeys(keys)),
        *(f"&{channel}" for channel in dict.fromkeys(channels)),
    ]


def setuser_lines(channels: Channels, user_prefix: str = "") -> list[str]:
    """`ACL SETUSER` commands for redis-cli, a placeholder where each password goes."""
    return [
        f"ACL SETUSER {user_prefix}{role} reset on >CHANGE-ME-{role} " + " ".join(rules)
        for role, rules in acl_rules(channels).items()
    ]
