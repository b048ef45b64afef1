"""The Ray rim: the only package that imports ray (tuner, trainables, callbacks, cluster)."""
