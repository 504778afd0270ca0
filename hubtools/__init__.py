"""hubtools: verified, versioned reasoning-data distillation on the Hugging Face Hub."""

__version__ = "0.1.0"
