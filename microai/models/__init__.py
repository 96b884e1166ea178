"""microai.models."""
