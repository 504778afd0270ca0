"""The `hubtools_ifeval` evaluate metric (see hubtools_ifeval.py)."""
