"""The figures wing: the shared style and image grids, and each stage's figures (generate,
latent, project). No imports here."""
