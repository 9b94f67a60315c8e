"""Ape-X style distributed training on Ray core (optional extra: `pip install .[distributed]`).

Thin adapters around the single-machine modules, which never import Ray:
`workers` (actor workers), `shard` (replay shards), `pool` (driver-side handles),
`cluster` (connecting, resource checks) and `apex` (the learner loop).
`wnrl.training.runner` dispatches here when `distributed.enabled` is true.
"""
