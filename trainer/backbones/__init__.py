"""Pretrained backbones for the `transfer` recipe: networks, weights and their provenance."""
