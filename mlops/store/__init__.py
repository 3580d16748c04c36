"""The store: objects over fsspec, their integrity and key layout, the versioned stores."""
