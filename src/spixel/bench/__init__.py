"""Protocols that reproduce the papers tables on spixels own data and models, and their reports."""
