"""Deployment examples (systemd, Docker) and the Redis ACL set-up script."""
