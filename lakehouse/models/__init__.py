"""Which models embed clips and captions: resolution (weights here or not, model ids),
loading, and the query encoders search and SQL share."""
