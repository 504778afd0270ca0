"""The `hubtools_gpqa` evaluate metric (see hubtools_gpqa.py)."""
