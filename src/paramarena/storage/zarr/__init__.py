"""storage/zarr."""
