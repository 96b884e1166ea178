"""microai.quant."""
