"""attrflow.zoo."""
