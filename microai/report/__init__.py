"""microai.report."""
