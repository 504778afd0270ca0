"""Quality: perplexity and token counts of teacher responses (``hubtools score``), and the
paper's quality filters applied at build time (perplexity, 20-gram templates, structure)."""
