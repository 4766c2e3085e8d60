"""One small class per channel, all with the same interface (see base.py)."""
