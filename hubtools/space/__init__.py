"""The Space: ``reader`` (the self-contained data layer the app imports) and ``deploy``.

Nothing heavy is imported here: ``hubtools space --help`` must stay light.
"""
