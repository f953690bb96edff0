"""Making a product, step 2: fit ADTR on good images (`inspector train`)."""
