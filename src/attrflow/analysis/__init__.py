"""attrflow.analysis."""
