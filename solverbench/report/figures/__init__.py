"""The report's figures (PNG, matplotlib's Agg backend)."""
