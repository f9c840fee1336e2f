"""Amaranth RTL of the search engine: one block per file, each with a golden twin."""
