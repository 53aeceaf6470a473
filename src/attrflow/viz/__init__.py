"""attrflow.viz."""
