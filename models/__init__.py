"""Backbones and the embedding network."""
from models.backbones import ALL_BACKBONES, BACKBONES, build_backbone, check_backbone_name
from models.embedding import EMBEDDING_DIM, EmbeddingNet

__all__ = ["ALL_BACKBONES", "BACKBONES", "check_backbone_name", "EMBEDDING_DIM", "EmbeddingNet", "build_backbone"]
