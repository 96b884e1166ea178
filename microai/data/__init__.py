"""microai.data."""
