"""Documents: loaders -> chunk -> embed -> store -> retrieve -> cite."""
