"""attrflow.flow."""
