"""attrflow.methods."""
