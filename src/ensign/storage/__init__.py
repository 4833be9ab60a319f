"""Content-addressed blob storage on fsspec: hashing, the stat cache, transfers."""
