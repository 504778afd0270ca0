"""The `hubtools_math` evaluate metric (see hubtools_math.py)."""
