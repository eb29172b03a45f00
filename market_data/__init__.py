"""Market data: IB ticks and bars onto the bus."""
