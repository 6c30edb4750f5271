"""The storage adapter: the only part of the package that imports `azure.*`."""
