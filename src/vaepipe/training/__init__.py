"""The training wing: the loop, its written-out backward pass, checkpoints and the codes kept
per epoch. No imports here."""
