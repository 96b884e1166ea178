"""MicroAI: train, quantize, generate C for, deploy and measure DNNs on microcontrollers."""

__version__ = "0.1.0"
