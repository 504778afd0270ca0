"""The local Hub: a Hugging Face Hub-compatible server backed by git repositories."""

from hubtools.hub.serve import configure_local_endpoint, create_token, env_lines, serve

__all__ = ["configure_local_endpoint", "create_token", "env_lines", "serve"]
