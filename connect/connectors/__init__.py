"""Built-in connectors: file source and sink, PostgreSQL source and sink, Parquet sink."""
