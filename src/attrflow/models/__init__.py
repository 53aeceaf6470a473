"""attrflow.models."""
