"""microai.deploy."""
