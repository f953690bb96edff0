"""Making a product, step 3: how good is the model? Metrics (AUROC, AUPRO) and overlays."""
