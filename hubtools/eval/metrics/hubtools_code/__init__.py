"""The `hubtools_code` evaluate metric (see hubtools_code.py)."""
