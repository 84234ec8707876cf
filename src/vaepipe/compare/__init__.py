"""The compare wing: one static page over every experiment the repository knows (`make compare`).
No imports here."""
