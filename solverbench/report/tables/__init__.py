"""The report's tables: a format-free model and its Markdown, LaTeX, CSV and HTML renderings."""
