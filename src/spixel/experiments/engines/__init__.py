"""Engines run the experiment loop over a dataset: :mod:`.local` in this process (DataLoader workers decode)."""
