"""attrflow.data."""
