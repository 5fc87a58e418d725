"""Backbones and the embedding network."""
from models.backbones import BACKBONES, build_backbone
from models.embedding import EMBEDDING_DIM, EmbeddingNet

__all__ = ["BACKBONES", "EMBEDDING_DIM", "EmbeddingNet", "build_backbone"]
