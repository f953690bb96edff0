"""Making a product, step 5: thresholds with stated error rates, the record the line reads."""
