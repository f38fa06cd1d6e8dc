"""The upload job: local files, pre-flight, the ledger, the upload task, polling and summaries (no transports)."""
