"""storage/mxnet."""
