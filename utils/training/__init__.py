"""Training: the run configuration, the shared flags, building a run, its passes, checkpoints and the loop.

``config`` (RunConfig) -> ``cli`` (flags -> RunConfig) -> ``build`` (network, head, optimisers) ->
``passes`` (an epoch, embeddings, prototypes) -> ``checkpoints`` (the run folder's files) -> ``run`` (train()).
``speed`` holds the switches that change no result (uint8 batches, --compile, --deterministic).
"""
