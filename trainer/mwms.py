"""MultiWorkerMirroredStrategy whose `reduce` accepts what Keras 3's `fit` passes it.

Keras 3 (3.15 here; keras-team/keras#20585) calls `strategy.reduce` in two ways that
MultiWorkerMirroredStrategy rejects when there is more than one worker:
- a whole (x, y) batch, i.e. a nest, once per fit/evaluate to build the model symbolically
  (MirroredStrategy maps over nests; this one tries to make one tensor of it);
- MEAN with axis=0 on each replica's scalar loss and metrics, at every step (a scalar has no
  axis 0).
This subclass reduces nests leaf by leaf and scalars across replicas only. Everything else,
collectives and variables included, is the stock strategy.
"""

from __future__ import annotations

import tensorflow as tf


class MultiWorkerStrategy(tf.distribute.MultiWorkerMirroredStrategy):
    def reduce(self, reduce_op, value, axis):
        reduce_one = super().reduce

        def leaf(v):
            rank = self.experimental_local_results(v)[0].shape.rank
            return reduce_one(reduce_op, v, None if rank == 0 else axis)

        return tf.nest.map_structure(leaf, value)
