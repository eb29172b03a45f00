"""Storage: every event persisted once, with SQLAlchemy."""
