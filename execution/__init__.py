"""Execution: signals to IB orders, behind risk checks and the kill switch."""
