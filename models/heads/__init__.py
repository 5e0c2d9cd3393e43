"""Decode heads: Semantic-FPN and UperNet."""
