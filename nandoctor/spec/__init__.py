"""The spec language: typed models of a network spec, YAML loading with positions, messages."""
