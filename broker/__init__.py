"""The IB connection shared by market data and execution: kept up forever, reported on the bus."""
