"""The Lance storage handle (:class:`~lakehouse.storage.store.Store`): tables, merges on keys,
commits with retries, streaming reads, the published versions readers see, reader leases,
version cleanup, the Parquet copy SQL scans, scan options and the vector-column reader."""
