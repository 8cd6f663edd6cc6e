"""Networks only (trunks, heads); training logic lives in core.methods."""
