"""attrflow.runner."""
