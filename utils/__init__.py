"""The bottom layer (errors, io, hierarchy, trees, record, lock, options; imports nothing from datasets/, models/,
losses/) and, above it, training (utils/training/) and evaluation (utils/evaluation/)."""
