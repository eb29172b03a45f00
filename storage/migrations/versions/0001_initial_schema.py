"""Initial schema: ticks, bars, signals, orders, order_history, fills, system_events.

Revision ID: 0001
Revises:
Create Date: 2026-11-24
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "bars",
        sa.Column("event_id", sa.String(), nullable=False),
        sa.Column("ts", sa.DateTime(timezone=True), nullable=False),
        sa.Column("symbol", sa.String(), nullable=False),
        sa.Column("start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("seconds", sa.Integer(), nullable=False),
        sa.Column("open", sa.Numeric(), nullable=False),
        sa.Column("high", sa.Numeric(), nullable=False),
        sa.Column("low", sa.Numeric(), nullable=False),
        sa.Column("close", sa.Numeric(), nullable=False),
        sa.Column("volume", sa.Numeric(), nullable=False),
        sa.Column("wap", sa.Numeric(), nullable=True),
        sa.Column("trade_count", sa.Integer(), nullable=True),
        sa.PrimaryKeyConstraint("event_id", name=op.f("pk_bars")),
        sa.UniqueConstraint(
            "symbol", "start", "seconds", name=op.f("uq_bars_symbol_start_seconds")
        ),
    )
    op.create_table(
        "fills",
        sa.Column("execution_id", sa.String(), nullable=False),
        sa.Column("event_id", sa.String(), nullable=False),
        sa.Column("ts", sa.DateTime(timezone=True), nullable=False),
        sa.Column("symbol", sa.String(), nullable=False),
        sa.Column("signal_id", sa.String(), nullable=False),
        sa.Column("side", sa.String(), nullable=False),
        sa.Column("quantity", sa.Numeric(), nullable=False),
        sa.Column("price", sa.Numeric(), nullable=False),
        sa.Column("executed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("order_id", sa.Integer(), nullable=True),
        sa.Column("perm_id", sa.BigInteger(), nullable=True),
        sa.Column("commission", sa.Numeric(), nullable=True),
        sa.Column("commission_currency", sa.String(), nullable=True),
        sa.Column("realized_pnl", sa.Numeric(), nullable=True),
        sa.Column("exchange", sa.String(), nullable=False),
        sa.Column("account", sa.String(), nullable=False),
        sa.CheckConstraint("quantity > 0", name=op.f("ck_fills_quantity_positive")),
        sa.PrimaryKeyConstraint("execution_id", name=op.f("pk_fills")),
    )
    op.create_index(op.f("ix_fills_executed_at"), "fills", ["executed_at"], unique=False)
    op.create_index(
        op.f("ix_fills_symbol_executed_at"), "fills", ["symbol", "executed_at"], unique=False
    )
    op.create_table(
        "order_history",
        sa.Column("event_id", sa.String(), nullable=False),
        sa.Column("ts", sa.DateTime(timezone=True), nullable=False),
        sa.Column("order_key", sa.String(), nullable=False),
        sa.Column("symbol", sa.String(), nullable=False),
        sa.Column("signal_id", sa.String(), nullable=False),
        sa.Column("status", sa.String(), nullable=False),
        sa.Column("action", sa.String(), nullable=False),
        sa.Column("quantity", sa.Numeric(), nullable=False),
        sa.Column("order_type", sa.String(), nullable=False),
        sa.Column("limit_price", sa.Numeric(), nullable=True),
        sa.Column("order_id", sa.Integer(), nullable=True),
        sa.Column("perm_id", sa.BigInteger(), nullable=True),
        sa.Column("filled", sa.Numeric(), nullable=False),
        sa.Column("remaining", sa.Numeric(), nullable=False),
        sa.Column("avg_fill_price", sa.Numeric(), nullable=True),
        sa.Column("account", sa.String(), nullable=False),
        sa.Column("reason", sa.String(), nullable=False),
        sa.Column("external", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("event_id", name=op.f("pk_order_history")),
    )
    op.create_index(
        op.f("ix_order_history_order_key_ts"), "order_history", ["order_key", "ts"], unique=False
    )
    op.create_table(
        "orders",
        sa.Column("order_key", sa.String(), nullable=False),
        sa.Column("event_id", sa.String(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("symbol", sa.String(), nullable=False),
        sa.Column("signal_id", sa.String(), nullable=False),
        sa.Column("status", sa.String(), nullable=False),
        sa.Column("action", sa.String(), nullable=False),
        sa.Column("quantity", sa.Numeric(), nullable=False),
        sa.Column("order_type", sa.String(), nullable=False),
        sa.Column("limit_price", sa.Numeric(), nullable=True),
        sa.Column("order_id", sa.Integer(), nullable=True),
        sa.Column("perm_id", sa.BigInteger(), nullable=True),
        sa.Column("filled", sa.Numeric(), nullable=False),
        sa.Column("remaining", sa.Numeric(), nullable=False),
        sa.Column("avg_fill_price", sa.Numeric(), nullable=True),
        sa.Column("account", sa.String(), nullable=False),
        sa.Column("reason", sa.String(), nullable=False),
        sa.Column("external", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("order_key", name=op.f("pk_orders")),
    )
    op.create_index(op.f("ix_orders_status"), "orders", ["status"], unique=False)
    op.create_index(op.f("ix_orders_updated_at"), "orders", ["updated_at"], unique=False)
    op.create_table(
        "signals",
        sa.Column("event_id", sa.String(), nullable=False),
        sa.Column("ts", sa.DateTime(timezone=True), nullable=False),
        sa.Column("symbol", sa.String(), nullable=False),
        sa.Column("action", sa.String(), nullable=False),
        sa.Column("quantity", sa.Numeric(), nullable=False),
        sa.Column("order_type", sa.String(), nullable=False),
        sa.Column("limit_price", sa.Numeric(), nullable=True),
        sa.Column("strategy", sa.String(), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("reason", sa.String(), nullable=False),
        sa.PrimaryKeyConstraint("event_id", name=op.f("pk_signals")),
    )
    op.create_index(op.f("ix_signals_symbol_ts"), "signals", ["symbol", "ts"], unique=False)
    op.create_index(op.f("ix_signals_ts"), "signals", ["ts"], unique=False)
    op.create_table(
        "system_events",
        sa.Column("event_id", sa.String(), nullable=False),
        sa.Column("ts", sa.DateTime(timezone=True), nullable=False),
        sa.Column("type", sa.String(), nullable=False),
        sa.Column("kind", sa.String(), nullable=False),
        sa.Column("channel", sa.String(), nullable=False),
        sa.Column("symbol", sa.String(), nullable=True),
        sa.Column(
            "payload", sa.JSON().with_variant(postgresql.JSONB(), "postgresql"), nullable=False
        ),
        sa.PrimaryKeyConstraint("event_id", name=op.f("pk_system_events")),
    )
    op.create_index(op.f("ix_system_events_ts"), "system_events", ["ts"], unique=False)
    op.create_index(op.f("ix_system_events_type_ts"), "system_events", ["type", "ts"], unique=False)
    op.create_table(
        "ticks",
        sa.Column("event_id", sa.String(), nullable=False),
        sa.Column("ts", sa.DateTime(timezone=True), nullable=False),
        sa.Column("symbol", sa.String(), nullable=False),
        sa.Column("bid", sa.Float(), nullable=True),
        sa.Column("ask", sa.Float(), nullable=True),
        sa.Column("last", sa.Float(), nullable=True),
        sa.Column("bid_size", sa.Float(), nullable=True),
        sa.Column("ask_size", sa.Float(), nullable=True),
        sa.Column("last_size", sa.Float(), nullable=True),
        sa.Column("volume", sa.Float(), nullable=True),
        sa.Column("exchange_time", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("event_id", name=op.f("pk_ticks")),
    )
    op.create_index(op.f("ix_ticks_symbol_ts"), "ticks", ["symbol", "ts"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_ticks_symbol_ts"), table_name="ticks")
    op.drop_table("ticks")
    op.drop_index(op.f("ix_system_events_type_ts"), table_name="system_events")
    op.drop_index(op.f("ix_system_events_ts"), table_name="system_events")
    op.drop_table("system_events")
    op.drop_index(op.f("ix_signals_ts"), table_name="signals")
    op.drop_index(op.f("ix_signals_symbol_ts"), table_name="signals")
    op.drop_table("signals")
    op.drop_index(op.f("ix_orders_updated_at"), table_name="orders")
    op.drop_index(op.f("ix_orders_status"), table_name="orders")
    op.drop_table("orders")
    op.drop_index(op.f("ix_order_history_order_key_ts"), table_name="order_history")
    op.drop_table("order_history")
    op.drop_index(op.f("ix_fills_symbol_executed_at"), table_name="fills")
    op.drop_index(op.f("ix_fills_executed_at"), table_name="fills")
    op.drop_table("fills")
    op.drop_table("bars")
