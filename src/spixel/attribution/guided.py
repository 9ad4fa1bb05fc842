"""Guided backpropagation and deconvolution (to be written)."""
