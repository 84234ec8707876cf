"""vaepipe: the variational autoencoder of the NYU Deep Learning notes as a DVC pipeline."""
