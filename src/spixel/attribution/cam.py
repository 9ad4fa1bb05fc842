"""CAM family (to be written)."""
